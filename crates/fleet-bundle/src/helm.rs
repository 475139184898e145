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

/// Runs `command` (helm, or git for a git chart); the last line it printed on stderr when
/// it fails.
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

/// The last line of a program's stderr, or `fallback` when it printed none.
pub fn last_line(stderr: &[u8], fallback: &str) -> String {
    let text = String::from_utf8_lossy(stderr);
    text.trim().lines().last().unwrap_or(fallback).to_owned()
}
