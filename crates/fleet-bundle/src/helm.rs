//! Running the real `helm`: with its cache, configuration and data directories (registry
//! logins and repository entries included) in a scratch directory of the caller's, so that
//! no run depends on, or changes, the machine's helm settings.

use std::path::Path;
use std::process::Command;

/// A `helm` command whose directories are below `work/helm`.
pub fn command(helm: &Path, work: &Path) -> Command {
    let mut cmd = Command::new(helm);
    for (name, dir) in [
        ("HELM_CACHE_HOME", "cache"),
        ("HELM_CONFIG_HOME", "config"),
        ("HELM_DATA_HOME", "data"),
    ] {
        cmd.env(name, work.join("helm").join(dir));
    }
    cmd
}

/// Runs `command` (helm, or git for a git chart); what it said went wrong on stderr when it
/// fails ([`last_line`]).
pub fn run(mut command: Command) -> Result<(), String> {
    let output = command
        .output()
        .map_err(|e| format!("running {}: {e}", command.get_program().to_string_lossy()))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(last_line(&output.stderr, "failed"))
    }
}

/// What a program's stderr says went wrong: its `Error:`/`fatal:` line (after the line that
/// names a refused login or host key, when there is one: git ends those with advice), else its
/// last line,
/// or `fallback` when it printed none.
pub fn last_line(stderr: &[u8], fallback: &str) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let error = lines
        .iter()
        .find(|l| l.starts_with("Error:") || l.starts_with("fatal:"));
    let refused = lines
        .iter()
        .find(|l| l.contains("Permission denied") || l.contains("Host key verification failed"));
    match (refused, error) {
        (Some(refused), Some(error)) => format!("{refused} {error}"),
        (None, Some(error)) => (*error).to_owned(),
        _ => lines.last().map_or(fallback, |l| l).to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_that_says_what_went_wrong_is_kept() {
        let git = "user@host: Permission denied (publickey).\r\nfatal: Could not read from remote repository.\n\nPlease make sure you have the correct access rights\nand the repository exists.\n";
        let cases = [
            (
                git,
                "user@host: Permission denied (publickey). fatal: Could not read from remote repository.",
            ),
            (
                "fatal: repository 'x' not found\n",
                "fatal: repository 'x' not found",
            ),
            (
                "WARNING: a\nError: chart not found\n",
                "Error: chart not found",
            ),
            ("something odd\nlast words\n", "last words"),
            ("", "failed"),
        ];
        for (stderr, want) in cases {
            assert_eq!(last_line(stderr.as_bytes(), "failed"), want, "{stderr:?}");
        }
    }
}
