//! A bundle's files and a cluster's options to the manifests that cluster receives, with the
//! real tools: Helm charts (in the bundle, or from a repository or OCI registry) through
//! `helm template`, kustomize directories through `kustomize build`, and raw YAML with
//! overlays. Each tool runs with private `HELM_*_HOME` directories in a temporary directory
//! that is removed afterwards.

use std::path::{Path, PathBuf};
use std::process::Command;

use fleet_api::BundleDeploymentOptions;
use fleet_api::naming::helm_release_name;
use serde_json::{Map, Value};

use crate::Files;
use crate::overlay::{OverlayError, apply_overlays};
use crate::target::ClusterInfo;
use crate::values::{TemplateError, ValueTemplates, cluster_values};

/// The helm and kustomize binaries to run.
#[derive(Debug, Clone)]
pub struct Tools {
    pub helm: PathBuf,
    pub kustomize: PathBuf,
    /// The Kubernetes version charts are rendered for (`helm template --kube-version`;
    /// `fleet deploy --dry-run --kube-version`); none: helm's default.
    pub kube_version: Option<String>,
}

/// How a bundle is deployed (Fleet's style detection, in its order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Style {
    /// A chart in the bundle, at this directory (`""` for the bundle root).
    LocalChart(String),
    /// A chart by name from a Helm repository.
    RepoChart {
        repo: String,
        chart: String,
        version: Option<String>,
    },
    /// A chart by URL (`oci://...`, `https://.../chart.tgz`).
    RemoteChart {
        url: String,
        version: Option<String>,
    },
    /// A kustomization at this directory.
    Kustomize(String),
    /// Plain manifests, with YAML overlays.
    Raw,
}

/// Why a bundle could not be rendered for a cluster.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error(
        "helm.chart {0:?} is neither a directory of the bundle with a Chart.yaml nor a URL (set helm.repo for a chart name)"
    )]
    ChartNotFound(String),
    #[error(transparent)]
    Overlay(#[from] OverlayError),
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("{path}: {message}")]
    Yaml { path: String, message: String },
    #[error("{tool} failed: {message}")]
    Tool { tool: String, message: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What to render.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The bundle's (and so the BundleDeployment's) name.
    pub bundle: &'a str,
    pub files: &'a Files,
    /// The bundle's options with the cluster's target customizations merged in.
    pub options: &'a BundleDeploymentOptions,
    pub cluster: &'a ClusterInfo,
}

/// The bundle's deployment style.
pub fn style(files: &Files, options: &BundleDeploymentOptions) -> Result<Style, RenderError> {
    let helm = options.helm.as_ref();
    if let Some(chart) = helm
        .and_then(|h| h.chart.as_deref())
        .filter(|c| !c.is_empty())
    {
        let dir = chart.trim_start_matches("./").trim_end_matches('/');
        let version = helm
            .and_then(|h| h.version.clone())
            .filter(|v| !v.is_empty());
        if files.contains_key(&join(dir, "Chart.yaml")) {
            return Ok(Style::LocalChart(dir.to_owned()));
        }
        let repo = helm.and_then(|h| h.repo.as_deref()).unwrap_or_default();
        if let Some(embedded) = embedded_chart(files, chart, repo, version.as_deref()) {
            return Ok(Style::LocalChart(embedded));
        }
        if let Some(repo) = helm.and_then(|h| h.repo.clone()).filter(|r| !r.is_empty()) {
            return Ok(Style::RepoChart {
                repo,
                chart: chart.to_owned(),
                version,
            });
        }
        if chart.contains("://") {
            return Ok(Style::RemoteChart {
                url: chart.to_owned(),
                version,
            });
        }
        return Err(RenderError::ChartNotFound(chart.to_owned()));
    }
    if files.contains_key("Chart.yaml") {
        return Ok(Style::LocalChart(String::new()));
    }
    let dir = options
        .kustomize
        .as_ref()
        .and_then(|k| k.dir.as_deref())
        .unwrap_or_default()
        .trim_start_matches("./")
        .trim_end_matches('/');
    let dir = if dir == "." { "" } else { dir };
    if ["kustomization.yaml", "kustomization.yml", "Kustomization"]
        .iter()
        .any(|f| files.contains_key(&join(dir, f)))
    {
        return Ok(Style::Kustomize(dir.to_owned()));
    }
    Ok(Style::Raw)
}

/// The namespace resources without one are deployed to.
pub fn namespace(options: &BundleDeploymentOptions) -> String {
    options
        .target_namespace
        .clone()
        .or_else(|| options.default_namespace.clone())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".to_owned())
}

/// The Helm release name of a bundle deployment.
pub fn release_name(bundle: &str, options: &BundleDeploymentOptions) -> String {
    options
        .helm
        .as_ref()
        .and_then(|h| h.release_name.clone())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| helm_release_name(bundle))
}

/// The manifests `input.cluster` receives, as YAML documents. With `namespace` (Fleet's
/// `targetNamespace`) every object is put into that namespace, as Fleet's post-renderer does.
pub fn render(input: Input<'_>, tools: &Tools) -> Result<Vec<Value>, RenderError> {
    let forced = input
        .options
        .target_namespace
        .clone()
        .filter(|n| !n.is_empty());
    let mut documents = render_documents(input, tools)?;
    if let Some(namespace) = forced {
        for document in &mut documents {
            if let Some(metadata) = document.get_mut("metadata").and_then(Value::as_object_mut) {
                metadata.insert("namespace".to_owned(), Value::String(namespace.clone()));
            }
        }
    }
    Ok(documents)
}

fn render_documents(input: Input<'_>, tools: &Tools) -> Result<Vec<Value>, RenderError> {
    let style = style(input.files, input.options)?;
    if style == Style::Raw {
        let overlays = input
            .options
            .yaml
            .as_ref()
            .map(|y| y.overlays.clone())
            .unwrap_or_default();
        let files = apply_overlays(input.files, &overlays)?;
        return raw_documents(&files);
    }
    let work = tempfile::Builder::new()
        .prefix("fleet-render-")
        .tempdir()
        .map_err(|source| RenderError::Io {
            path: std::env::temp_dir(),
            source,
        })?;
    let bundle_dir = work.path().join("bundle");
    write_files(&bundle_dir, input.files)?;
    let output = match &style {
        Style::Kustomize(dir) => {
            let mut cmd = Command::new(&tools.kustomize);
            cmd.arg("build").arg(bundle_dir.join(dir));
            run("kustomize", cmd)?
        }
        _ => helm_template(&input, &style, &bundle_dir, work.path(), tools)?,
    };
    parse_documents("rendered output", &output)
}

fn helm_template(
    input: &Input<'_>,
    style: &Style,
    bundle_dir: &Path,
    work: &Path,
    tools: &Tools,
) -> Result<String, RenderError> {
    let values_path = work.join("values.json");
    let values = values(input)?;
    std::fs::write(&values_path, Value::Object(values).to_string()).map_err(|source| {
        RenderError::Io {
            path: values_path.clone(),
            source,
        }
    })?;
    let mut cmd = fleet_bundle::helm::command(&tools.helm, work);
    cmd.arg("template")
        .arg(release_name(input.bundle, input.options))
        .args(["--namespace", &namespace(input.options)])
        .arg("--include-crds")
        .arg("--values")
        .arg(&values_path);
    if let Some(version) = &tools.kube_version {
        cmd.args(["--kube-version", version]);
    }
    chart_args(&mut cmd, style, bundle_dir);
    run("helm template", cmd)
}

/// The chart arguments of a helm command for a chart `style` (the bundle's files written to
/// `bundle_dir` for a local chart); nothing for kustomize and raw YAML.
pub fn chart_args(cmd: &mut Command, style: &Style, bundle_dir: &Path) {
    match style {
        Style::LocalChart(dir) => {
            cmd.arg(bundle_dir.join(dir));
        }
        Style::RepoChart {
            repo,
            chart,
            version,
        } => {
            cmd.arg(chart).args(["--repo", repo]);
            if let Some(version) = version {
                cmd.args(["--version", version]);
            }
        }
        Style::RemoteChart { url, version } => {
            cmd.arg(url);
            if let Some(version) = version {
                cmd.args(["--version", version]);
            }
        }
        Style::Kustomize(_) | Style::Raw => {}
    }
}

/// `helm.values` templated for the cluster (`fleet test`; the controller templates
/// `helm.values` itself, so the agent uses [`helm_values`]).
pub fn values(input: &Input<'_>) -> Result<Map<String, Value>, RenderError> {
    let values = helm_values(input);
    let Some(helm) = input.options.helm.as_ref() else {
        return Ok(values);
    };
    let templates = ValueTemplates {
        values: &values,
        template_values: &helm.template_values,
        disable_pre_process: helm.disable_pre_process,
    };
    Ok(cluster_values(templates, input.cluster)?)
}

/// `helm.values` as the BundleDeployment carries them: the values files were merged into them
/// when the Bundle was built, and a target's over the bundle's when the options were merged
/// (Fleet's precedence: values, valuesFiles, then the target's values and valuesFiles, then
/// valuesFrom, which only exists downstream). No values file is read here, as in Fleet.
pub fn helm_values(input: &Input<'_>) -> Map<String, Value> {
    input
        .options
        .helm
        .as_ref()
        .and_then(|helm| helm.values.clone())
        .unwrap_or_default()
}

/// The YAML documents of the plain manifests ([`fleet_bundle::manifests::raw_manifests`]).
fn raw_documents(files: &Files) -> Result<Vec<Value>, RenderError> {
    let mut documents = Vec::new();
    for (path, content) in fleet_bundle::manifests::raw_manifests(files) {
        documents.extend(parse_documents(path, &String::from_utf8_lossy(content))?);
    }
    Ok(documents)
}

fn parse_documents(path: &str, text: &str) -> Result<Vec<Value>, RenderError> {
    let documents: Vec<Value> =
        serde_saphyr::from_multiple(text).map_err(|e| RenderError::Yaml {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
    Ok(documents.into_iter().filter(|d| !d.is_null()).collect())
}

/// Writes a bundle's files below `dir`.
pub fn write_files(dir: &Path, files: &Files) -> Result<(), RenderError> {
    for (name, content) in files {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| RenderError::Io {
                path: parent.to_owned(),
                source,
            })?;
        }
        std::fs::write(&path, content).map_err(|source| RenderError::Io { path, source })?;
    }
    Ok(())
}

fn run(tool: &str, mut cmd: Command) -> Result<String, RenderError> {
    let output = cmd.output().map_err(|e| RenderError::Tool {
        tool: tool.to_owned(),
        message: format!("cannot run {}: {e}", cmd.get_program().to_string_lossy()),
    })?;
    if !output.status.success() {
        return Err(RenderError::Tool {
            tool: tool.to_owned(),
            message: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The directory of the chart downloaded into the Bundle when it was built (below
/// `fleet_api::naming::embedded_chart_dir`), if it was.
fn embedded_chart(files: &Files, chart: &str, repo: &str, version: Option<&str>) -> Option<String> {
    let prefix = fleet_api::naming::embedded_chart_dir(chart, repo, version.unwrap_or_default());
    files.keys().find_map(|path| {
        let dir = path
            .strip_prefix(&format!("{prefix}/"))?
            .strip_suffix("/Chart.yaml")?;
        (!dir.contains('/')).then(|| format!("{prefix}/{dir}"))
    })
}

fn join(dir: &str, file: &str) -> String {
    if dir.is_empty() || dir == "." {
        file.to_owned()
    } else {
        format!("{dir}/{file}")
    }
}

#[cfg(test)]
mod tests {
    use fleet_api::{HelmOptions, KustomizeOptions};

    use super::*;

    fn files(paths: &[&str]) -> Files {
        paths
            .iter()
            .map(|p| ((*p).to_owned(), Vec::new()))
            .collect()
    }

    #[test]
    fn styles_are_detected_in_fleets_order() {
        let none = BundleDeploymentOptions::default();
        assert_eq!(
            style(&files(&["Chart.yaml", "kustomization.yaml"]), &none).ok(),
            Some(Style::LocalChart(String::new()))
        );
        assert_eq!(
            style(&files(&["kustomization.yaml", "a.yaml"]), &none).ok(),
            Some(Style::Kustomize(String::new()))
        );
        assert_eq!(style(&files(&["a.yaml"]), &none).ok(), Some(Style::Raw));
        let kustomize = BundleDeploymentOptions {
            kustomize: Some(KustomizeOptions {
                dir: Some("./overlays/dev".to_owned()),
            }),
            ..BundleDeploymentOptions::default()
        };
        assert_eq!(
            style(&files(&["overlays/dev/kustomization.yaml"]), &kustomize).ok(),
            Some(Style::Kustomize("overlays/dev".to_owned()))
        );
        let chart = |chart: &str, repo: Option<&str>| BundleDeploymentOptions {
            helm: Some(HelmOptions {
                chart: Some(chart.to_owned()),
                repo: repo.map(str::to_owned),
                ..HelmOptions::default()
            }),
            ..BundleDeploymentOptions::default()
        };
        assert_eq!(
            style(&files(&["chart/Chart.yaml"]), &chart("./chart", None)).ok(),
            Some(Style::LocalChart("chart".to_owned()))
        );
        assert!(matches!(
            style(&files(&[]), &chart("nginx", Some("https://charts"))),
            Ok(Style::RepoChart { .. })
        ));
        assert!(matches!(
            style(&files(&[]), &chart("oci://r/c", None)),
            Ok(Style::RemoteChart { .. })
        ));
        assert!(matches!(
            style(&files(&[]), &chart("missing", None)),
            Err(RenderError::ChartNotFound(_))
        ));
    }

    #[test]
    fn namespaces_and_release_names_default_like_fleet() {
        let mut options = BundleDeploymentOptions::default();
        assert_eq!(namespace(&options), "default");
        options.default_namespace = Some("apps".to_owned());
        assert_eq!(namespace(&options), "apps");
        options.target_namespace = Some("forced".to_owned());
        assert_eq!(namespace(&options), "forced");
        assert_eq!(
            release_name("repo-multi-cluster-hello", &options),
            "repo-multi-cluster-hello"
        );
    }

    #[test]
    fn raw_manifests_as_fleet_renders_them() {
        let files: Files = [
            ("fleet.yaml", "defaultNamespace: a\n"),
            ("cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm, namespace: other}\n"),
            ("role.json", r#"{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "r"}}"#),
            ("notes.txt", "not a manifest"),
            ("sub/fleet.yaml", "defaultNamespace: sub\n"),
            ("sub/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: sub}\n"),
            ("chart/Chart.yaml", "name: c\nversion: 0.1.0\n"),
            ("chart/templates/cm.yaml", "{{ .Values.x }}"),
        ]
        .iter()
        .map(|(p, c)| ((*p).to_owned(), c.as_bytes().to_vec()))
        .collect();
        let tools = Tools {
            helm: PathBuf::from("/nonexistent/helm"),
            kustomize: PathBuf::from("/nonexistent/kustomize"),
            kube_version: None,
        };
        let cluster = ClusterInfo::default();
        let names = |options: &BundleDeploymentOptions| -> Vec<(String, String)> {
            let input = Input {
                bundle: "b",
                files: &files,
                options,
                cluster: &cluster,
            };
            render(input, &tools)
                .expect("renders")
                .iter()
                .map(|d| {
                    let meta = &d["metadata"];
                    (
                        meta["name"].as_str().unwrap_or_default().to_owned(),
                        meta["namespace"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        };
        // `.json` is a manifest; `sub` (a bundle) and `chart` (a chart) deploy their own.
        let plain = BundleDeploymentOptions::default();
        assert_eq!(
            names(&plain),
            [
                ("cm".to_owned(), "other".to_owned()),
                ("r".to_owned(), String::new())
            ]
        );
        // `namespace` (targetNamespace) puts every object into it, as Fleet's post-renderer.
        let forced = BundleDeploymentOptions {
            target_namespace: Some("forced".to_owned()),
            ..BundleDeploymentOptions::default()
        };
        assert_eq!(
            names(&forced),
            [
                ("cm".to_owned(), "forced".to_owned()),
                ("r".to_owned(), "forced".to_owned())
            ]
        );
    }
}
