//! Which directories of a repository become Bundles, and their names (Fleet's `fleet apply`
//! discovery, `internal/cmd/cli/apply` in Fleet):
//!
//! 1. each GitRepo `paths` entry is a Go glob relative to the repository root (default `.`);
//!    only directories match;
//! 2. below each match, every directory holding a `fleet.yaml` (or `fleet.yml`) is a bundle;
//! 3. the match itself is a bundle if it has a `fleet.yaml`, or if it or a directory below it
//!    that is not inside a nested bundle holds a `*.yaml`/`*.yml` file;
//! 4. hidden directories (`.git` and others) are not searched;
//! 5. a bundle's name is [`helm_release_name`] of `<gitrepo name>/<path>`, unless its
//!    `fleet.yaml` sets `name`.

use std::collections::BTreeSet;
use std::path::Path;

use crate::glob::{BadPattern, glob_dirs};
use fleet_api::naming::helm_release_name;

/// `fleet.yaml` and its alternative name, in the order Fleet looks for them.
pub const OPTIONS_FILES: [&str; 2] = ["fleet.yaml", "fleet.yml"];

/// A directory that becomes a Bundle.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct BundleDir {
    /// Relative to the repository root, `/`-separated; `.` for the root.
    pub path: String,
    /// Its `fleet.yaml`/`fleet.yml`, if it has one (relative to the repository root).
    pub options_file: Option<String>,
}

/// The bundle directories for a GitRepo's `paths` (empty means `["."]`), sorted and
/// without duplicates (overlapping globs find a directory once).
pub fn discover(root: &Path, paths: &[String]) -> Result<Vec<BundleDir>, BadPattern> {
    let default = [".".to_owned()];
    let paths = if paths.is_empty() {
        &default[..]
    } else {
        paths
    };
    let mut found = BTreeSet::new();
    for pattern in paths {
        for base in glob_dirs(root, pattern)? {
            let mut nested = Vec::new();
            let base_has_yaml = scan(root, &base, true, &mut nested);
            if base_has_yaml || options_file(root, &base).is_some() {
                found.insert(bundle_dir(root, &base));
            }
            found.extend(nested.iter().map(|dir| bundle_dir(root, dir)));
        }
    }
    Ok(found.into_iter().collect())
}

fn join(base: &str, name: &str) -> String {
    if base == "." || base.is_empty() {
        name.to_owned()
    } else {
        format!("{base}/{name}")
    }
}

fn options_file(root: &Path, dir: &str) -> Option<String> {
    OPTIONS_FILES
        .iter()
        .map(|file| join(dir, file))
        .find(|file| root.join(file).is_file())
}

fn bundle_dir(root: &Path, dir: &str) -> BundleDir {
    BundleDir {
        path: dir.to_owned(),
        options_file: options_file(root, dir),
    }
}

fn is_yaml(name: &str) -> bool {
    name.ends_with(".yaml") || name.ends_with(".yml")
}

/// Walks `dir`, collecting directories with an options file into `nested`; returns whether
/// `dir` holds YAML outside those nested bundles (its own options file does not count).
fn scan(root: &Path, dir: &str, is_base: bool, nested: &mut Vec<String>) -> bool {
    if !is_base && options_file(root, dir).is_some() {
        nested.push(dir.to_owned());
        scan_nested_only(root, dir, nested);
        return false;
    }
    let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
        return false;
    };
    let mut names: Vec<(String, bool)> = entries
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.to_owned(), e.path().is_dir())))
        .filter(|(name, _)| !name.starts_with('.'))
        .collect();
    names.sort();
    let mut has_yaml = false;
    for (name, is_dir) in names {
        if is_dir {
            has_yaml |= scan(root, &join(dir, &name), false, nested);
        } else if is_yaml(&name) && !OPTIONS_FILES.contains(&name.as_str()) {
            has_yaml = true;
        }
    }
    has_yaml
}

/// Below a nested bundle, only deeper bundles matter.
fn scan_nested_only(root: &Path, dir: &str, nested: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
        return;
    };
    let mut dirs: Vec<String> = entries
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|name| !name.starts_with('.'))
        .collect();
    dirs.sort();
    for name in dirs {
        scan(root, &join(dir, &name), false, nested);
    }
}

/// The Bundle name for a directory of a GitRepo (before a `fleet.yaml` `name` override).
pub fn bundle_name(gitrepo: &str, path: &str) -> String {
    let path = path.trim_matches('/');
    if path.is_empty() || path == "." {
        helm_release_name(gitrepo)
    } else {
        helm_release_name(&format!("{gitrepo}/{path}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempTree;

    fn paths(dirs: &[BundleDir]) -> Vec<&str> {
        dirs.iter().map(|d| d.path.as_str()).collect()
    }

    #[test]
    fn finds_fleet_yaml_dirs_and_a_root_with_its_own_manifests() {
        let tree = TempTree::new(&[
            ("simple/deploy.yaml", "x"),
            ("simple/svc.yml", "x"),
            ("multi/fleet.yaml", "name: multi"),
            ("multi/app/deploy.yaml", "x"),
            ("multi/dev/fleet.yml", ""),
            ("multi/dev/deploy.yaml", "x"),
            ("only-nested/a/fleet.yaml", ""),
            ("only-nested/a/x.yaml", "x"),
            ("only-nested/README.md", "no yaml here"),
            ("charts/web/Chart.yaml", "x"),
            (".git/config.yaml", "never"),
        ]);
        let all = discover(tree.root(), &[]).expect("discover");
        assert_eq!(
            paths(&all),
            [".", "multi", "multi/dev", "only-nested/a"],
            "the root holds YAML outside nested bundles (simple/, charts/web)"
        );
        let only_nested = discover(tree.root(), &["only-nested".to_owned()]).expect("discover");
        assert_eq!(
            paths(&only_nested),
            ["only-nested/a"],
            "no YAML of its own: no bundle"
        );
        let globbed =
            discover(tree.root(), &["simple".to_owned(), "multi*".to_owned()]).expect("ok");
        assert_eq!(paths(&globbed), ["multi", "multi/dev", "simple"]);
        assert_eq!(globbed[0].options_file.as_deref(), Some("multi/fleet.yaml"));
        assert_eq!(
            globbed[1].options_file.as_deref(),
            Some("multi/dev/fleet.yml")
        );
        assert_eq!(globbed[2].options_file, None);
        let twice = discover(tree.root(), &["multi".to_owned(), "mul*".to_owned()]).expect("ok");
        assert_eq!(
            paths(&twice),
            ["multi", "multi/dev"],
            "overlapping globs find it once"
        );
        assert!(discover(tree.root(), &["[".to_owned()]).is_err());
    }

    #[test]
    fn names_follow_fleet() {
        assert_eq!(
            bundle_name("one", "multi-cluster/hello-world"),
            "one-multi-cluster-hello-world"
        );
        assert_eq!(bundle_name("one", "."), "one");
        assert_eq!(bundle_name("one", "/simple/"), "one-simple");
        assert_eq!(
            bundle_name("Repo", "My_App"),
            helm_release_name("Repo/My_App")
        );
    }
}
