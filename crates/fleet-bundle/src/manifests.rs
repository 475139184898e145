//! A bundle's plain manifests: which files they are ([`raw_manifests`], as Fleet picks them
//! when it deploys raw YAML), and checking that they parse, so that a broken file is reported
//! with its path and line when the Bundle is built, not later by an agent in some cluster
//! (Fleet only finds out at deploy time).
//!
//! Not checked: `fleet.yaml` (parsed on its own), and everything inside a Helm chart (a
//! directory with a `Chart.yaml`), whose templates are not YAML until rendered.

use crate::files::Files;

/// A manifest that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct ManifestError {
    /// Relative to the bundle directory.
    pub path: String,
    /// 1-based, where the parser knows it.
    pub line: Option<usize>,
    pub message: String,
}

/// The plain manifests a bundle of raw YAML deploys, as Fleet picks them (`manifests` in
/// `internal/helmdeployer/render/helm.go`): `.yaml`, `.yml` and `.json` files, except the
/// bundle's own `fleet.yaml`/`fleet.yml` and everything below a subdirectory that is a bundle
/// or a chart of its own (it holds a `fleet.yaml`, `fleet.yml` or `Chart.yaml`): those are
/// deployed by their own bundle, and rendering them here too would give the same objects two
/// releases.
pub fn raw_manifests(files: &Files) -> impl Iterator<Item = (&String, &Vec<u8>)> {
    let nested: Vec<String> = files
        .keys()
        .filter_map(|path| {
            let (dir, name) = path.rsplit_once('/')?;
            (crate::discovery::OPTIONS_FILES.contains(&name) || name == "Chart.yaml")
                .then(|| format!("{dir}/"))
        })
        .collect();
    files.iter().filter(move |(path, _)| {
        [".yaml", ".yml", ".json"]
            .iter()
            .any(|extension| path.ends_with(extension))
            && !crate::discovery::OPTIONS_FILES.contains(&path.as_str())
            && !nested.iter().any(|dir| path.starts_with(dir.as_str()))
    })
}

/// Parses every plain manifest in `files` (paths relative to the bundle directory).
pub fn check_manifests(files: &Files) -> Result<(), ManifestError> {
    let chart_dirs: Vec<&str> = files
        .keys()
        .filter_map(|path| match path.rsplit_once('/') {
            Some((dir, "Chart.yaml")) => Some(dir),
            None if path == "Chart.yaml" => Some(""),
            _ => None,
        })
        .collect();
    for (path, content) in raw_manifests(files) {
        if in_chart(path, &chart_dirs) {
            continue;
        }
        let text = std::str::from_utf8(content).map_err(|_| ManifestError {
            path: path.clone(),
            line: None,
            message: "not UTF-8 text".to_owned(),
        })?;
        if let Err(e) = serde_saphyr::from_multiple::<serde_json::Value>(text) {
            return Err(ManifestError {
                path: path.clone(),
                line: e.location().map(|l| l.line() as usize),
                message: e.to_string().lines().next().unwrap_or_default().to_owned(),
            });
        }
    }
    Ok(())
}

fn in_chart(path: &str, chart_dirs: &[&str]) -> bool {
    chart_dirs
        .iter()
        .any(|dir| dir.is_empty() || path.starts_with(&format!("{dir}/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(entries: &[(&str, &str)]) -> Files {
        entries
            .iter()
            .map(|(p, c)| ((*p).to_owned(), c.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn valid_multi_document_manifests_pass() {
        let files = files(&[
            (
                "cm.yaml",
                "apiVersion: v1\nkind: ConfigMap\n---\napiVersion: v1\nkind: Secret\n",
            ),
            ("README.md", "not yaml: [\n"),
            ("fleet.yaml", "not: [checked here\n"),
        ]);
        assert_eq!(check_manifests(&files), Ok(()));
    }

    #[test]
    fn a_broken_manifest_names_file_and_line() {
        let files = files(&[("app/deploy.yaml", "kind: Deployment\nspec: [\n  a: b\n")]);
        let err = check_manifests(&files).expect_err("broken");
        assert_eq!(err.path, "app/deploy.yaml");
        assert!(err.line.is_some(), "{err}");
        assert!(err.to_string().starts_with("app/deploy.yaml:"), "{err}");
    }

    #[test]
    fn chart_templates_are_not_checked() {
        let files = files(&[
            ("chart/Chart.yaml", "name: c\nversion: 0.1.0\n"),
            (
                "chart/templates/cm.yaml",
                "{{- if .Values.x }}\nkind: ConfigMap\n{{- end }}\n",
            ),
        ]);
        assert_eq!(check_manifests(&files), Ok(()));
    }
}
