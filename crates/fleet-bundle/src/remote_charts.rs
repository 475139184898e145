//! Charts from Helm repositories and URLs downloaded when the Bundle is built and embedded in
//! it, as Fleet's reader does (`addRemoteCharts`): each `helm` block (the bundle's and its
//! target customizations') with a `repo`, an `oci://` or an `https://` chart gets `helm pull`,
//! and the chart's files go into the Bundle below
//! [`embedded_chart_dir`](fleet_api::naming::embedded_chart_dir), where the agent finds them:
//! downstream clusters need no access to the repository.
//!
//! Only when the caller gives a helm binary (`ApplyOptions::helm`); without one, the agent
//! downloads the chart when it installs it.

use std::path::Path;
use std::process::Command;

use fleet_api::naming::embedded_chart_dir;
use fleet_api::{BundleSpec, HelmOptions};

use crate::files::Files;

/// Why a chart could not be downloaded.
#[derive(Debug, thiserror::Error)]
#[error("downloading chart {chart} (repo {repo:?}, version {version:?}): {message}")]
pub struct ChartDownloadError {
    pub chart: String,
    pub repo: String,
    pub version: String,
    pub message: String,
}

/// A chart to download: (chart, repo, version), as the `helm` block says.
fn remote(helm: &HelmOptions) -> Option<(String, String, String)> {
    let chart = helm.chart.clone().filter(|c| !c.is_empty())?;
    let repo = helm.repo.clone().unwrap_or_default();
    let url = chart.starts_with("oci://")
        || chart.starts_with("https://")
        || chart.starts_with("http://");
    (!repo.is_empty() || url).then(|| (chart, repo, helm.version.clone().unwrap_or_default()))
}

/// The remote charts of `spec` (the bundle's and its targets'), without repeats.
pub fn charts(spec: &BundleSpec) -> Vec<(String, String, String)> {
    let mut found = Vec::new();
    let helms = std::iter::once(spec.options.helm.as_ref())
        .chain(spec.targets.iter().map(|t| t.options.helm.as_ref()));
    for helm in helms.flatten() {
        if let Some(chart) = remote(helm)
            && !found.contains(&chart)
        {
            found.push(chart);
        }
    }
    found
}

/// Downloads every remote chart of `spec` with `helm` into `files`.
pub fn embed(spec: &BundleSpec, files: &mut Files, helm: &Path) -> Result<(), ChartDownloadError> {
    for (chart, repo, version) in charts(spec) {
        let error = |message: String| ChartDownloadError {
            chart: chart.clone(),
            repo: repo.clone(),
            version: version.clone(),
            message,
        };
        let work = tempfile::tempdir().map_err(|e| error(e.to_string()))?;
        let untar = work.path().join("chart");
        let mut command = Command::new(helm);
        command
            .args(["pull", &chart, "--untar", "--untardir"])
            .arg(&untar);
        if !repo.is_empty() {
            command.args(["--repo", &repo]);
        }
        if !version.is_empty() {
            command.args(["--version", &version]);
        }
        for (variable, dir) in [
            ("HELM_CACHE_HOME", "cache"),
            ("HELM_CONFIG_HOME", "config"),
            ("HELM_DATA_HOME", "data"),
        ] {
            if std::env::var_os(variable).is_none() {
                command.env(variable, work.path().join(dir));
            }
        }
        let output = command
            .output()
            .map_err(|e| error(format!("running {}: {e}", helm.display())))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(error(
                stderr
                    .trim()
                    .lines()
                    .last()
                    .unwrap_or("helm pull failed")
                    .to_owned(),
            ));
        }
        let prefix = embedded_chart_dir(&chart, &repo, &version);
        for (relative, content) in
            crate::dependencies::files_below(&untar).map_err(|e| error(e.to_string()))?
        {
            files.insert(format!("{prefix}/{relative}"), content);
        }
    }
    Ok(())
}
