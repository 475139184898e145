//! A whole repository tree to its Bundles: discovery (or the GitRepo's explicit `bundles`),
//! naming, and reading each bundle directory. Error messages name files relative to the
//! repository root, as users see them in their repository.

use std::path::Path;

use fleet_api::Bundle;

use crate::discovery::{BundleDir, bundle_name, discover};
use crate::glob::BadPattern;
use crate::read::{ApplyOptions, BundleError, read_bundle};

/// Why a repository could not be read into Bundles.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("paths: {0}")]
    Pattern(#[from] BadPattern),
    #[error("{0}: no such directory")]
    NoSuchDirectory(String),
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error(transparent)]
    Credentials(#[from] crate::chart_credentials::CredentialsError),
    #[error("bundles {first} and {second} are both named {name}")]
    DuplicateName {
        name: String,
        first: String,
        second: String,
    },
}

/// One explicitly listed bundle (a GitRepo's `bundles` entry, Fleet's "driven scan").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExplicitBundle {
    /// The bundle directory, relative to the repository root.
    pub base: String,
    /// Its options file relative to `base`, instead of `fleet.yaml`.
    pub options: Option<String>,
}

/// Where a repository's Bundles come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scan {
    /// Discover bundles below these Go glob patterns (empty means the root).
    Paths(Vec<String>),
    /// Exactly these bundle directories.
    Explicit(Vec<ExplicitBundle>),
}

/// Reads every Bundle of the tree at `root` for the GitRepo (or `fleet apply` name) `name`,
/// in namespace `namespace`. `prefix` is prepended to each bundle's path for naming (the
/// directory `fleet apply` was given; empty for a repository root).
pub fn read_repo(
    name: &str,
    namespace: &str,
    root: &Path,
    prefix: &str,
    scan: &Scan,
    opts: &ApplyOptions,
) -> Result<Vec<Bundle>, RepoError> {
    let dirs: Vec<(String, BundleDir)> = match scan {
        Scan::Paths(patterns) => discover(root, patterns)?
            .into_iter()
            .map(|dir| (join(prefix, &dir.path), dir))
            .collect(),
        Scan::Explicit(entries) => entries
            .iter()
            .map(|entry| explicit_dir(root, prefix, entry))
            .collect::<Result<_, _>>()?,
    };
    let mut bundles: Vec<(String, Bundle)> = Vec::with_capacity(dirs.len());
    let opts = &ApplyOptions {
        root: Some(root.to_owned()),
        ..opts.clone()
    };
    for (path, dir) in dirs {
        let options_file = dir.options_file.as_ref().map(|f| root.join(f));
        let with_access;
        let opts = match &opts.chart_access_by_path {
            Some(by_path) => {
                with_access = ApplyOptions {
                    chart_access: by_path.for_path(&path)?,
                    ..opts.clone()
                };
                &with_access
            }
            None => opts,
        };
        let mut bundle = read_bundle(
            &bundle_name(name, &path),
            &root.join(&dir.path),
            options_file.as_deref(),
            opts,
        )
        .map_err(|e| relative(e, root, prefix))?;
        bundle.metadata.namespace = Some(namespace.to_owned());
        if let Some((first, _)) = bundles
            .iter()
            .find(|(_, b)| b.metadata.name == bundle.metadata.name)
        {
            return Err(RepoError::DuplicateName {
                name: bundle.metadata.name.unwrap_or_default(),
                first: first.clone(),
                second: path,
            });
        }
        bundles.push((path, bundle));
    }
    Ok(bundles.into_iter().map(|(_, bundle)| bundle).collect())
}

fn explicit_dir(
    root: &Path,
    prefix: &str,
    entry: &ExplicitBundle,
) -> Result<(String, BundleDir), RepoError> {
    let base = entry.base.trim_start_matches("./").trim_end_matches('/');
    let base = if base.is_empty() { "." } else { base };
    if !root.join(base).is_dir() {
        return Err(RepoError::NoSuchDirectory(join(prefix, base)));
    }
    let (options_file, path) = match &entry.options {
        // A bundle per options file: the file's stem tells them apart.
        Some(options) => {
            let stem = options
                .rsplit('/')
                .next()
                .and_then(|file| file.split('.').next())
                .unwrap_or(options);
            (
                Some(join(base, options)),
                format!("{}-{stem}", join(prefix, base)),
            )
        }
        None => (
            crate::discovery::OPTIONS_FILES
                .iter()
                .map(|file| join(base, file))
                .find(|file| root.join(file).is_file()),
            join(prefix, base),
        ),
    };
    Ok((
        path,
        BundleDir {
            path: base.to_owned(),
            options_file,
        },
    ))
}

/// `base/relative`, with `.` and empty parts dropped.
pub fn join(base: &str, relative: &str) -> String {
    let base = base.trim_start_matches("./").trim_end_matches('/');
    match (base, relative) {
        ("" | ".", rel) => rel.to_owned(),
        (base, "." | "") => base.to_owned(),
        (base, rel) => format!("{base}/{rel}"),
    }
}

/// The error with file paths relative to the repository (and under `prefix`).
fn relative(error: BundleError, root: &Path, prefix: &str) -> BundleError {
    let shorten = |path: std::path::PathBuf| match path.strip_prefix(root) {
        Ok(rel) => Path::new(&join(prefix, &rel.to_string_lossy())).to_owned(),
        Err(_) => path,
    };
    match error {
        BundleError::FleetYaml {
            path,
            line,
            message,
        } => BundleError::FleetYaml {
            path: shorten(path),
            line,
            message,
        },
        BundleError::Manifest {
            path,
            line,
            message,
        } => BundleError::Manifest {
            path: shorten(path),
            line,
            message,
        },
        BundleError::MissingChart(missing) => {
            BundleError::MissingChart(crate::remote_charts::MissingChart {
                path: shorten(missing.path),
                ..missing
            })
        }
        BundleError::ValuesFile(error) => {
            BundleError::ValuesFile(crate::values_files::ValuesFileError {
                path: shorten(error.path),
                message: error.message,
            })
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempTree;

    fn names(bundles: &[Bundle]) -> Vec<String> {
        bundles
            .iter()
            .map(|b| b.metadata.name.clone().unwrap_or_default())
            .collect()
    }

    #[test]
    fn nested_bundles_are_named_from_the_repo_and_path() {
        let tree = TempTree::new(&[
            ("apps/a/cm.yaml", "kind: ConfigMap\n"),
            ("apps/b/fleet.yaml", "defaultNamespace: b\n"),
            ("apps/b/cm.yaml", "kind: ConfigMap\n"),
        ]);
        let scan = Scan::Paths(vec!["apps/*".to_owned()]);
        let bundles = read_repo(
            "repo",
            "ns",
            tree.root(),
            "",
            &scan,
            &ApplyOptions::default(),
        )
        .expect("read");
        assert_eq!(names(&bundles), ["repo-apps-a", "repo-apps-b"]);
        assert!(
            bundles
                .iter()
                .all(|b| b.metadata.namespace.as_deref() == Some("ns"))
        );
    }

    #[test]
    fn errors_name_the_file_relative_to_the_repository() {
        let tree = TempTree::new(&[("app/fleet.yaml", "helm: [\n")]);
        let scan = Scan::Paths(Vec::new());
        let err = read_repo("r", "ns", tree.root(), "", &scan, &ApplyOptions::default())
            .expect_err("broken");
        assert!(err.to_string().starts_with("app/fleet.yaml:"), "{err}");
    }

    #[test]
    fn explicit_bundles_use_their_options_files() {
        let tree = TempTree::new(&[
            ("app/cm.yaml", "kind: ConfigMap\n"),
            ("app/dev.yaml", "namespace: dev\n"),
        ]);
        let scan = Scan::Explicit(vec![
            ExplicitBundle {
                base: "app".to_owned(),
                options: None,
            },
            ExplicitBundle {
                base: "app".to_owned(),
                options: Some("dev.yaml".to_owned()),
            },
        ]);
        let bundles =
            read_repo("r", "ns", tree.root(), "", &scan, &ApplyOptions::default()).expect("read");
        assert_eq!(names(&bundles), ["r-app", "r-app-dev"]);
        let missing = Scan::Explicit(vec![ExplicitBundle {
            base: "nope".to_owned(),
            options: None,
        }]);
        let err = read_repo(
            "r",
            "ns",
            tree.root(),
            "",
            &missing,
            &ApplyOptions::default(),
        )
        .expect_err("missing");
        assert_eq!(err.to_string(), "nope: no such directory");
    }

    #[test]
    fn join_drops_dots() {
        assert_eq!(join(".", "."), ".");
        assert_eq!(join("multi-cluster/hello", "."), "multi-cluster/hello");
        assert_eq!(join("./repo/", "app"), "repo/app");
        assert_eq!(join("", "app/dev"), "app/dev");
    }
}
