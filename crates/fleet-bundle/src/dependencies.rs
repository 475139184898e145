//! Helm chart dependencies fetched when the Bundle is built, as Fleet's reader fetches them
//! (`helmupdater.UpdateHelmDependencies`): a chart of the bundle whose `dependencies` are not
//! all in its `charts/` directory gets `helm dependency update` (in a copy: the repository
//! is left as it is), and the `Chart.lock` and `charts/` it produced go into the Bundle, so
//! that downstream clusters need no access to the dependencies' repositories.
//!
//! This is the one place where building a Bundle runs a program (the real `helm`), and only
//! when the caller gives one (`ApplyOptions::helm`): without it, dependencies are left to
//! the agent, which installs local charts with `--dependency-update`.

use std::path::{Path, PathBuf};

use crate::files::Files;

/// Why a chart's dependencies could not be fetched.
#[derive(Debug, thiserror::Error)]
#[error("updating the Helm dependencies of chart {chart}: {message}")]
pub struct DependencyError {
    /// The chart's directory in the bundle (`.` for the bundle's root).
    pub chart: String,
    pub message: String,
}

/// The directories (as prefixes of `files`' paths: `""` or `dir/`) of the charts in `files`
/// whose declared dependencies are not all present in their `charts/` directory.
pub fn unmet(files: &Files) -> Vec<String> {
    files
        .iter()
        .filter_map(|(path, content)| {
            let prefix = path.strip_suffix("Chart.yaml")?;
            if !(prefix.is_empty() || prefix.ends_with('/')) {
                return None;
            }
            let declared = declared_dependencies(content);
            let missing = declared.iter().any(|name| {
                let vendored = format!("{prefix}charts/{name}/Chart.yaml");
                let packaged = format!("{prefix}charts/{name}-");
                !files.contains_key(&vendored)
                    && !files
                        .keys()
                        .any(|p| p.starts_with(&packaged) && p.ends_with(".tgz"))
            });
            missing.then(|| prefix.to_owned())
        })
        .collect()
}

/// The names of the dependencies a `Chart.yaml` declares.
fn declared_dependencies(chart_yaml: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(chart_yaml);
    let Ok(chart) = serde_saphyr::from_str::<serde_json::Value>(&text) else {
        return Vec::new();
    };
    chart
        .get("dependencies")
        .and_then(serde_json::Value::as_array)
        .map(|dependencies| {
            dependencies
                .iter()
                .filter_map(|d| d.get("name")?.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Fetches the unmet dependencies of every chart in `files` with `helm`, adding each chart's
/// new `Chart.lock` and `charts/` files.
pub fn update(files: &mut Files, helm: &Path) -> Result<(), DependencyError> {
    for prefix in unmet(files) {
        let chart = if prefix.is_empty() {
            ".".to_owned()
        } else {
            prefix.trim_end_matches('/').to_owned()
        };
        let error = |message: String| DependencyError {
            chart: chart.clone(),
            message,
        };
        let work = tempfile::tempdir().map_err(|e| error(e.to_string()))?;
        let copy = work.path().join("chart");
        for (path, content) in files.iter() {
            let Some(relative) = path.strip_prefix(&prefix) else {
                continue;
            };
            let target = copy.join(relative);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(|e| error(e.to_string()))?;
            }
            std::fs::write(&target, content).map_err(|e| error(e.to_string()))?;
        }
        run_helm(helm, &copy, work.path()).map_err(error)?;
        for (relative, content) in fetched(&copy).map_err(|e| error(e.to_string()))? {
            files.insert(format!("{prefix}{relative}"), content);
        }
    }
    Ok(())
}

/// `helm dependency update` in `chart`, with helm's own directories below `work`.
fn run_helm(helm: &Path, chart: &Path, work: &Path) -> Result<(), String> {
    let mut command = crate::helm::command(helm, work);
    command.args(["dependency", "update"]).arg(chart);
    crate::helm::run(command)
}

/// `Chart.lock` and every file below `charts/` of the chart copy, relative to it.
fn fetched(chart: &Path) -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let mut found = Vec::new();
    let lock = chart.join("Chart.lock");
    if lock.is_file() {
        found.push(("Chart.lock".to_owned(), std::fs::read(&lock)?));
    }
    let charts = chart.join("charts");
    if charts.is_dir() {
        for (relative, content) in files_below(&charts)? {
            found.push((format!("charts/{relative}"), content));
        }
    }
    Ok(found)
}

/// Every file below `dir`, with its path relative to `dir` (`/`-separated).
pub(crate) fn files_below(dir: &Path) -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let mut found = Vec::new();
    let mut pending: Vec<PathBuf> = vec![dir.to_owned()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current)? {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else if let Ok(relative) = path.strip_prefix(dir) {
                let relative = relative.to_string_lossy().replace('\\', "/");
                found.push((relative, std::fs::read(&path)?));
            }
        }
    }
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(entries: &[(&str, &str)]) -> Files {
        entries
            .iter()
            .map(|(path, content)| ((*path).to_owned(), content.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn charts_with_missing_dependencies_are_found() {
        let with_deps = "name: app\nversion: 0.1.0\ndependencies:\n- name: redis\n  version: 1.0.0\n  repository: https://charts.example\n";
        // (files, charts whose dependencies are unmet)
        let cases = [
            (
                files(&[("Chart.yaml", "name: app\nversion: 0.1.0\n")]),
                vec![],
            ),
            (files(&[("Chart.yaml", with_deps)]), vec![""]),
            (
                files(&[("Chart.yaml", with_deps), ("charts/redis-1.0.0.tgz", "")]),
                vec![],
            ),
            (
                files(&[
                    ("Chart.yaml", with_deps),
                    ("charts/redis/Chart.yaml", "name: redis\n"),
                ]),
                vec![],
            ),
            (
                files(&[("web/Chart.yaml", with_deps), ("web/values.yaml", "")]),
                vec!["web/"],
            ),
            (files(&[("NotChart.yaml", with_deps)]), vec![]),
        ];
        for (files, want) in cases {
            assert_eq!(
                unmet(&files),
                want,
                "{:?}",
                files.keys().collect::<Vec<_>>()
            );
        }
    }
}
