//! Reading a bundle directory's files as Fleet's loader does (`bundlereader` in Fleet): every
//! file below the directory, without hidden files and directories, and without what
//! `.fleetignore` files exclude.
//!
//! `.fleetignore` (Fleet's rules, gitignore-like but simpler): one pattern per line; blank
//! lines and `#` comments skipped; trailing spaces trimmed unless escaped; a pattern is matched
//! with Go's `filepath.Match` against the *base name* of each file and directory; `dir/*`
//! ignores a directory named `dir`; no `**` and no `!`. A file's patterns apply to its own
//! directory and everything below it, not to sibling directories.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::glob::{self, BadPattern};

/// File contents by path relative to the bundle directory (`/`-separated), sorted.
pub type Files = BTreeMap<String, Vec<u8>>;

/// Why a directory could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Ignore { path: PathBuf, source: BadPattern },
    #[error(
        "{path}: {size} bytes is more than the {limit} bytes a file may have (--max-file-size)"
    )]
    FileTooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
    },
    #[error("{path}: the bundle's files add up to more than {limit} bytes (--max-bundle-size)")]
    BundleTooLarge { path: PathBuf, limit: u64 },
}

/// How much is read from a repository, checked before anything is read or parsed, so that an
/// oversized file costs neither memory nor time, however often it is retried. The defaults
/// are far above what a Bundle can hold anyway (etcd takes 1.5 MiB per object, after
/// compression).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeLimits {
    /// Bytes of one file (a manifest, `fleet.yaml`, a chart file).
    pub file: u64,
    /// Bytes of all the files of one bundle.
    pub bundle: u64,
}

impl SizeLimits {
    pub const DEFAULT_FILE: u64 = 10 * 1024 * 1024;
    pub const DEFAULT_BUNDLE: u64 = 50 * 1024 * 1024;

    /// Fails when the file at `path` is larger than allowed (without reading it).
    pub fn check_file(&self, path: &Path) -> Result<u64, ReadError> {
        let size = std::fs::metadata(path).map_err(io(path))?.len();
        if size > self.file {
            return Err(ReadError::FileTooLarge {
                path: path.to_owned(),
                size,
                limit: self.file,
            });
        }
        Ok(size)
    }
}

impl Default for SizeLimits {
    fn default() -> Self {
        Self {
            file: Self::DEFAULT_FILE,
            bundle: Self::DEFAULT_BUNDLE,
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ReadError + '_ {
    move |source| ReadError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The patterns of the `.fleetignore` in `dir`, if any.
pub fn read_fleetignore(dir: &Path) -> Result<Vec<String>, ReadError> {
    let path = dir.join(".fleetignore");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(&path)(e)),
    };
    Ok(text.lines().filter_map(parse_ignore_line).collect())
}

fn parse_ignore_line(line: &str) -> Option<String> {
    let trimmed = line.trim_end();
    // Keep one escaped trailing space (`foo\ `).
    let pattern = if trimmed.ends_with('\\') && trimmed.len() < line.len() {
        format!("{trimmed} ")
    } else {
        trimmed.to_owned()
    };
    (!pattern.is_empty() && !pattern.starts_with('#')).then_some(pattern)
}

/// `dir/*`: a pattern that ignores the directory `dir` (Fleet's `^.+/\*` test).
fn directory_pattern(pattern: &str) -> Option<&str> {
    pattern
        .find("/*")
        .filter(|&at| at > 0)
        .map(|_| pattern.strip_suffix("/*").unwrap_or(pattern))
}

fn ignored(patterns: &[String], name: &str, is_dir: bool) -> Result<bool, BadPattern> {
    for pattern in patterns {
        let hit = match directory_pattern(pattern) {
            Some(dir_name) => is_dir && dir_name == name,
            None => glob::matches(pattern, name)?,
        };
        if hit {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Reads every file below `dir` that Fleet would put into a bundle, within `limits`.
pub fn read_dir_files(dir: &Path, limits: &SizeLimits) -> Result<Files, ReadError> {
    let mut files = Files::new();
    let mut total = 0;
    walk(dir, "", &[], limits, &mut total, &mut files)?;
    Ok(files)
}

fn walk(
    dir: &Path,
    prefix: &str,
    inherited: &[String],
    limits: &SizeLimits,
    total: &mut u64,
    files: &mut Files,
) -> Result<(), ReadError> {
    let mut patterns = inherited.to_vec();
    patterns.extend(read_fleetignore(dir)?);
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .collect::<Result<_, _>>()
        .map_err(io(dir))?;
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for entry in entries {
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let path = entry.path();
        let is_dir = path.is_dir();
        let skip = name.starts_with('.')
            || ignored(&patterns, &name, is_dir).map_err(|source| ReadError::Ignore {
                path: dir.join(".fleetignore"),
                source,
            })?;
        if skip {
            continue;
        }
        let relative = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        if is_dir {
            walk(&path, &relative, &patterns, limits, total, files)?;
        } else {
            *total += limits.check_file(&path)?;
            if *total > limits.bundle {
                return Err(ReadError::BundleTooLarge {
                    path: path.clone(),
                    limit: limits.bundle,
                });
            }
            let content = std::fs::read(&path).map_err(io(&path))?;
            files.insert(relative, content);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempTree;

    #[test]
    fn reads_everything_but_hidden_and_ignored_files() {
        let tree = TempTree::new(&[
            ("app/deploy.yaml", "kind: Deployment"),
            ("app/.hidden.yaml", "x"),
            ("app/.git/config", "x"),
            ("app/notes.md", "x"),
            (
                "app/.fleetignore",
                "# comment\n\n*.md\nsecret-*   \ntmp/*\n",
            ),
            ("app/tmp/draft.yaml", "x"),
            ("app/sub/secret-key.yaml", "ignored below too"),
            ("app/sub/svc.yaml", "kind: Service"),
            ("app/sub/.fleetignore", "svc-extra.yaml"),
            ("app/sub/svc-extra.yaml", "x"),
            ("app/other/svc-extra.yaml", "siblings are not affected"),
        ]);
        let files = read_dir_files(&tree.path("app"), &SizeLimits::default()).expect("reads");
        let names: Vec<_> = files.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            ["deploy.yaml", "other/svc-extra.yaml", "sub/svc.yaml"],
            "hidden, *.md, secret-*, tmp/ and sub's own ignore honoured"
        );
        assert_eq!(files["deploy.yaml"], b"kind: Deployment");
    }

    #[test]
    fn oversized_files_and_bundles_are_refused_before_reading() {
        let tree = TempTree::new(&[("app/a.yaml", "0123456789"), ("app/b.yaml", "0123456789")]);
        let limits = |file, bundle| SizeLimits { file, bundle };
        let err = read_dir_files(&tree.path("app"), &limits(5, 100)).expect_err("file");
        assert!(
            matches!(
                err,
                ReadError::FileTooLarge {
                    size: 10,
                    limit: 5,
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("a.yaml: 10 bytes is more than the 5 bytes")
        );
        let err = read_dir_files(&tree.path("app"), &limits(10, 15)).expect_err("bundle");
        assert!(
            matches!(err, ReadError::BundleTooLarge { limit: 15, .. }),
            "{err}"
        );
        assert_eq!(
            read_dir_files(&tree.path("app"), &limits(10, 20))
                .expect("within both")
                .len(),
            2
        );
    }

    #[test]
    fn ignore_lines_are_parsed_as_fleet_does() {
        assert_eq!(parse_ignore_line("a.yaml   "), Some("a.yaml".to_owned()));
        assert_eq!(parse_ignore_line("a\\ "), Some("a\\ ".to_owned()));
        assert_eq!(parse_ignore_line("# note"), None);
        assert_eq!(parse_ignore_line("   "), None);
        assert_eq!(directory_pattern("tmp/*"), Some("tmp"));
        assert_eq!(directory_pattern("/*"), None);
        assert_eq!(directory_pattern("*.yaml"), None);
    }

    #[test]
    fn a_bad_ignore_pattern_names_the_file() {
        let tree = TempTree::new(&[("b/.fleetignore", "[\n"), ("b/a.yaml", "x")]);
        let err = read_dir_files(&tree.path("b"), &SizeLimits::default()).expect_err("bad pattern");
        assert!(err.to_string().contains(".fleetignore"), "{err}");
    }
}
