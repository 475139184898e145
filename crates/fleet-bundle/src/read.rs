//! One bundle directory to a Bundle, as Fleet's `fleet apply` reads it (`bundlereader` in
//! Fleet): `fleet.yaml` options, the directory's files as resources, and the GitRepo's settings
//! passed as apply options.
//!
//! Targets, in Fleet's order: the `fleet.yaml` `targets` then its `targetCustomizations`
//! (unnamed ones become `target000`, `target001`, ...); then either the `fleet.yaml`
//! `overrideTargets` (as targets and target restrictions) or the GitRepo's targets (the
//! "targets file"); and if there are still none, the `default` cluster group.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use fleet_api::{
    Bundle, BundleResource, BundleSpec, BundleTarget, BundleTargetRestriction, ClusterSelection,
    CorrectDrift, FleetYaml,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::files::{ReadError, SizeLimits, read_dir_files};
use crate::manifests::check_manifests;
use crate::values_files::{self, ValuesFileError};

/// Bundles whose JSON reaches this size get their resources compressed (Fleet's 1 MB rule).
pub const COMPRESS_ABOVE_BYTES: usize = 1_000_000;

/// What `fleet apply` takes from the command line (and gitjob from the GitRepo).
#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    /// Labels for every Bundle (the GitRepo's labels, `fleet.cattle.io/repo-name`, commit).
    pub labels: BTreeMap<String, String>,
    pub service_account: Option<String>,
    /// The GitRepo's targets (Fleet's "targets file").
    pub targets: Option<TargetsFile>,
    pub target_namespace: Option<String>,
    pub paused: bool,
    pub sync_generation: i64,
    pub keep_resources: bool,
    pub delete_namespace: bool,
    pub correct_drift: Option<CorrectDrift>,
    /// Always compress resources (`base64+gz`), not only above 1 MB.
    pub compress: bool,
    /// From GitRepoRestrictions: the namespaces the agent may deploy into.
    pub allowed_target_namespace_selector: Option<LabelSelector>,
    /// How much may be read (checked before reading).
    pub limits: SizeLimits,
    /// The repository root: values files may be read from anywhere below it, never above
    /// (default: only below the bundle's own directory).
    pub root: Option<PathBuf>,
    /// The helm binary that fetches the bundle's charts and chart dependencies into the
    /// Bundle (dependencies unless `helm.disableDependencyUpdate`); none: they are left to
    /// the agent.
    pub helm: Option<PathBuf>,
    /// How those charts are downloaded (credentials, TLS).
    pub chart_access: crate::remote_charts::ChartAccess,
    /// Per bundle path instead (`--helm-credentials-by-path-file`, `helmSecretNameForPaths`):
    /// a bundle no entry names gets no credentials, as in Fleet.
    pub chart_access_by_path: Option<crate::chart_credentials::AccessByPath>,
}

/// The GitRepo's targets as `fleet apply --targets-file` receives them.
#[derive(Debug, Clone, Default)]
pub struct TargetsFile {
    pub targets: Vec<BundleTarget>,
    pub target_restrictions: Vec<BundleTargetRestriction>,
}

/// Why a bundle directory could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// `fleet.yaml` does not parse: the file and, where known, the line.
    #[error("{}{}: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    FleetYaml {
        path: PathBuf,
        line: Option<usize>,
        message: String,
    },
    /// A manifest does not parse: the file and, where known, the line.
    #[error("{}{}: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Manifest {
        path: PathBuf,
        line: Option<usize>,
        message: String,
    },
    #[error(transparent)]
    MissingChart(#[from] crate::remote_charts::MissingChart),
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    ValuesFile(#[from] ValuesFileError),
    #[error(transparent)]
    Dependencies(#[from] crate::dependencies::DependencyError),
    #[error(transparent)]
    ChartDownload(#[from] crate::remote_charts::ChartDownloadError),
    #[error("compressing {name}: {source}")]
    Compress {
        name: String,
        source: std::io::Error,
    },
}

/// Reads the bundle in `dir`, named `name` unless its `fleet.yaml` names it.
pub fn read_bundle(
    name: &str,
    dir: &Path,
    options_file: Option<&Path>,
    opts: &ApplyOptions,
) -> Result<Bundle, BundleError> {
    let fleet_yaml = match options_file {
        Some(path) => {
            opts.limits.check_file(path)?;
            let text = std::fs::read_to_string(path).map_err(|source| ReadError::Io {
                path: path.to_owned(),
                source,
            })?;
            FleetYaml::from_yaml(&text).map_err(|e| BundleError::FleetYaml {
                path: path.to_owned(),
                line: e.line,
                message: e.message,
            })?
        }
        None => FleetYaml::default(),
    };
    let mut files = read_dir_files(dir, &opts.limits)?;
    check_manifests(&files).map_err(|e| BundleError::Manifest {
        path: dir.join(&e.path),
        line: e.line,
        message: e.message,
    })?;
    let mut bundle = assemble(name, fleet_yaml, opts);
    crate::remote_charts::check_local(&bundle.spec, dir)?;
    let disabled = bundle
        .spec
        .options
        .helm
        .as_ref()
        .is_some_and(|h| h.disable_dependency_update);
    if let Some(helm) = opts.helm.as_deref() {
        crate::remote_charts::embed(&bundle.spec, &mut files, helm, &opts.chart_access)?;
        if !disabled {
            crate::dependencies::update(&mut files, helm)?;
        }
        // Downloaded charts count against the bundle's size limit too.
        let total: u64 = files.values().map(|f| f.len() as u64).sum();
        if total > opts.limits.bundle {
            return Err(ReadError::BundleTooLarge {
                path: dir.to_owned(),
                limit: opts.limits.bundle,
            }
            .into());
        }
    }
    let boundary = opts.root.as_deref().unwrap_or(dir);
    values_files::fold(&mut bundle.spec, dir, boundary, &opts.limits)?;
    // Fleet leaves out `fleet.yaml` and a driven-scan options file, not a `fleet.yml` found by
    // the normal scan (its reader only knows the driven-scan file by name).
    let options_file = options_file
        .and_then(|path| path.strip_prefix(dir).ok())
        .map(|path| path.to_string_lossy().into_owned())
        .filter(|path| path != "fleet.yml");
    let ignore = values_files::apply_configs(&bundle.spec, options_file.as_deref());
    let files = values_files::without(files, &ignore);
    bundle.spec.resources = resources(&files, opts.compress)?;
    if !opts.compress && json_size(&bundle) >= COMPRESS_ABOVE_BYTES {
        bundle.spec.resources = resources(&files, true)?;
    }
    Ok(bundle)
}

fn json_size(bundle: &Bundle) -> usize {
    serde_json::to_vec(bundle).map_or(usize::MAX, |json| json.len())
}

/// The Bundle for a parsed `fleet.yaml` and the apply options, without resources.
pub fn assemble(name: &str, fleet_yaml: FleetYaml, opts: &ApplyOptions) -> Bundle {
    let FleetYaml {
        name: yaml_name,
        labels: yaml_labels,
        bundle: mut spec,
        target_customizations,
        override_targets,
        ..
    } = fleet_yaml;
    spec.targets.extend(target_customizations);
    for (index, target) in spec.targets.iter_mut().enumerate() {
        if target.name.is_none() {
            target.name = Some(format!("target{index:03}"));
        }
    }
    propagate_helm_chart(&mut spec);

    let mut bundle = Bundle::new(yaml_name.as_deref().unwrap_or(name), BundleSpec::default());
    let mut labels = opts.labels.clone();
    labels.extend(yaml_labels);
    if !labels.is_empty() {
        bundle.metadata.labels = Some(labels);
    }
    if let Some(account) = &opts.service_account {
        spec.options.service_account = Some(account.clone());
    }
    spec.options.force_sync_generation = opts.sync_generation;

    if override_targets.is_empty() {
        if let Some(file) = &opts.targets {
            spec.targets.extend(file.targets.iter().cloned());
            spec.target_restrictions
                .extend(file.target_restrictions.iter().cloned());
        }
    } else {
        for target in override_targets {
            spec.targets.push(BundleTarget {
                name: target.name.clone(),
                clusters: target.clusters.clone(),
                ..Default::default()
            });
            spec.target_restrictions.push(BundleTargetRestriction {
                name: target.name,
                clusters: target.clusters,
            });
        }
    }
    if spec.targets.is_empty() {
        spec.targets.push(BundleTarget {
            name: Some("default".to_owned()),
            clusters: ClusterSelection {
                cluster_group: Some("default".to_owned()),
                ..Default::default()
            },
            ..Default::default()
        });
    }
    if let Some(namespace) = &opts.target_namespace {
        spec.options.target_namespace = Some(namespace.clone());
        for target in &mut spec.targets {
            target.options.target_namespace = Some(namespace.clone());
        }
    }
    spec.paused |= opts.paused;
    spec.options.keep_resources |= opts.keep_resources;
    spec.options.delete_namespace |= opts.delete_namespace;
    if opts.allowed_target_namespace_selector.is_some() {
        spec.options
            .allowed_target_namespace_selector
            .clone_from(&opts.allowed_target_namespace_selector);
    }
    if let Some(drift) = opts.correct_drift.as_ref().filter(|d| d.enabled) {
        spec.options.correct_drift = Some(drift.clone());
    }
    bundle.spec = spec;
    bundle
}

/// A target's `helm` inherits the bundle's chart, repo and version where it sets none, so
/// each target downloads the right chart.
fn propagate_helm_chart(spec: &mut BundleSpec) {
    let Some(helm) = spec.options.helm.clone() else {
        return;
    };
    for target in &mut spec.targets {
        if let Some(target_helm) = target.options.helm.as_mut() {
            target_helm.repo = target_helm.repo.take().or_else(|| helm.repo.clone());
            target_helm.chart = target_helm.chart.take().or_else(|| helm.chart.clone());
            target_helm.version = target_helm.version.take().or_else(|| helm.version.clone());
        }
    }
}

/// Files as Bundle resources: text as is, binary (or everything, when compressing) as
/// `base64+gz`.
fn resources(
    files: &crate::files::Files,
    compress: bool,
) -> Result<Vec<BundleResource>, BundleError> {
    files
        .iter()
        .map(|(name, data)| {
            let text = (!compress)
                .then(|| std::str::from_utf8(data).ok())
                .flatten();
            Ok(match text {
                Some(text) => BundleResource {
                    name: Some(name.clone()),
                    content: Some(text.to_owned()),
                    encoding: None,
                },
                None => BundleResource {
                    name: Some(name.clone()),
                    content: Some(base64_gz(data).map_err(|source| BundleError::Compress {
                        name: name.clone(),
                        source,
                    })?),
                    encoding: Some("base64+gz".to_owned()),
                },
            })
        })
        .collect()
}

/// gzip, then standard base64: Fleet's `base64+gz` resource encoding.
pub fn base64_gz(data: &[u8]) -> std::io::Result<String> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data)?;
    let compressed = encoder.finish()?;
    Ok(base64::engine::general_purpose::STANDARD.encode(compressed))
}

/// The files of a Bundle's resources (path → bytes), decoding `base64+gz` content.
pub fn decode_resources(resources: &[BundleResource]) -> Result<crate::files::Files, DecodeError> {
    use std::io::Read as _;
    let mut files = crate::files::Files::new();
    for resource in resources {
        let name = resource.name.clone().unwrap_or_default();
        let content = resource.content.as_deref().unwrap_or_default();
        let bytes = match resource.encoding.as_deref() {
            None | Some("") => content.as_bytes().to_vec(),
            Some("base64+gz") => {
                let compressed = base64::engine::general_purpose::STANDARD
                    .decode(content)
                    .map_err(|e| DecodeError {
                        name: name.clone(),
                        message: e.to_string(),
                    })?;
                let mut data = Vec::new();
                flate2::read::GzDecoder::new(compressed.as_slice())
                    .read_to_end(&mut data)
                    .map_err(|e| DecodeError {
                        name: name.clone(),
                        message: e.to_string(),
                    })?;
                data
            }
            Some(other) => {
                return Err(DecodeError {
                    name,
                    message: format!("unknown encoding {other:?}"),
                });
            }
        };
        files.insert(name, bytes);
    }
    Ok(files)
}

/// A resource whose content cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("resource {name}: {message}")]
pub struct DecodeError {
    pub name: String,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;
    use crate::testutil::TempTree;

    fn target_names(bundle: &Bundle) -> Vec<&str> {
        bundle
            .spec
            .targets
            .iter()
            .filter_map(|t| t.name.as_deref())
            .collect()
    }

    fn gitrepo_targets() -> TargetsFile {
        TargetsFile {
            targets: vec![BundleTarget {
                name: Some("prod".to_owned()),
                clusters: ClusterSelection {
                    cluster_group: Some("production".to_owned()),
                    ..Default::default()
                },
                ..Default::default()
            }],
            target_restrictions: Vec::new(),
        }
    }

    #[test]
    fn fleet_yaml_options_customizations_and_gitrepo_targets() {
        let tree = TempTree::new(&[
            (
                "app/fleet.yaml",
                "name: guestbook\nlabels: {app: guestbook}\ndefaultNamespace: web\nhelm:\n  chart: web\n  repo: https://charts.example.com\n  version: 1.0.0\ntargetCustomizations:\n- clusterSelector: {matchLabels: {env: dev}}\n  helm: {values: {replicas: 1}}\n- name: edge\n  clusterName: edge-1\n  doNotDeploy: true\n",
            ),
            ("app/deploy.yaml", "kind: Deployment"),
        ]);
        let opts = ApplyOptions {
            labels: BTreeMap::from([
                ("fleet.cattle.io/repo-name".to_owned(), "sample".to_owned()),
                ("app".to_owned(), "overridden-by-fleet-yaml".to_owned()),
            ]),
            targets: Some(gitrepo_targets()),
            target_namespace: Some("apps".to_owned()),
            sync_generation: 3,
            ..Default::default()
        };
        let bundle = read_bundle(
            "sample-app",
            &tree.path("app"),
            Some(&tree.path("app/fleet.yaml")),
            &opts,
        )
        .expect("reads");
        assert_eq!(
            bundle.metadata.name.as_deref(),
            Some("guestbook"),
            "fleet.yaml name wins"
        );
        let labels = bundle.metadata.labels.clone().unwrap_or_default();
        assert_eq!(
            labels["app"], "guestbook",
            "fleet.yaml labels win over apply labels"
        );
        assert_eq!(labels["fleet.cattle.io/repo-name"], "sample");
        assert_eq!(target_names(&bundle), ["target000", "edge", "prod"]);
        let first_helm = bundle.spec.targets[0].options.helm.as_ref().expect("helm");
        assert_eq!(
            first_helm.chart.as_deref(),
            Some("web"),
            "chart propagated to targets"
        );
        assert_eq!(first_helm.version.as_deref(), Some("1.0.0"));
        assert!(
            bundle
                .spec
                .targets
                .iter()
                .all(|t| t.options.target_namespace.as_deref() == Some("apps"))
        );
        assert_eq!(bundle.spec.options.force_sync_generation, 3);
        let names: Vec<_> = bundle
            .spec
            .resources
            .iter()
            .filter_map(|r| r.name.as_deref())
            .collect();
        // Current Fleet leaves `fleet.yaml` out of the resources (its options are in the spec).
        assert_eq!(names, ["deploy.yaml"]);
    }

    #[test]
    fn values_files_are_merged_into_values_and_left_out_of_the_resources() {
        let tree = TempTree::new(&[
            (
                "app/fleet.yaml",
                "helm:\n  chart: ./chart\n  values: {a: inline, b: inline}\n  valuesFiles: [chart/values-common.yaml]\ntargetCustomizations:\n- name: prod\n  clusterSelector: {matchLabels: {env: prod}}\n  helm:\n    values: {c: inline}\n    valuesFiles: [prod.yaml]\n",
            ),
            ("app/chart/Chart.yaml", "name: app\nversion: 0.1.0\n"),
            ("app/chart/values.yaml", "a: chart-default\n"),
            ("app/chart/values-common.yaml", "b: common\n"),
            ("app/prod.yaml", "c: prod\n"),
        ]);
        let bundle = read_bundle(
            "app",
            &tree.path("app"),
            Some(&tree.path("app/fleet.yaml")),
            &ApplyOptions::default(),
        )
        .expect("reads");
        let values = |helm: Option<&fleet_api::HelmOptions>| {
            serde_json::Value::Object(helm.and_then(|h| h.values.clone()).unwrap_or_default())
        };
        assert_eq!(
            values(bundle.spec.options.helm.as_ref()),
            serde_json::json!({"a": "inline", "b": "common"})
        );
        let prod = bundle
            .spec
            .targets
            .iter()
            .find(|t| t.name.as_deref() == Some("prod"));
        assert_eq!(
            values(prod.and_then(|t| t.options.helm.as_ref())),
            serde_json::json!({"c": "prod"})
        );
        let names: Vec<_> = bundle
            .spec
            .resources
            .iter()
            .filter_map(|r| r.name.as_deref())
            .collect();
        assert_eq!(names, ["chart/Chart.yaml", "chart/values.yaml"]);
    }

    #[test]
    fn override_targets_replace_the_gitrepo_targets_and_restrict() {
        let yaml =
            FleetYaml::from_yaml("overrideTargets:\n- clusterGroup: canary\n").expect("parses");
        let opts = ApplyOptions {
            targets: Some(gitrepo_targets()),
            ..Default::default()
        };
        let bundle = assemble("b", yaml, &opts);
        assert_eq!(bundle.spec.targets.len(), 1);
        assert_eq!(
            bundle.spec.targets[0].clusters.cluster_group.as_deref(),
            Some("canary")
        );
        assert_eq!(bundle.spec.target_restrictions.len(), 1);
    }

    #[test]
    fn no_targets_means_the_default_cluster_group() {
        let bundle = assemble("b", FleetYaml::default(), &ApplyOptions::default());
        assert_eq!(target_names(&bundle), ["default"]);
        assert_eq!(
            bundle.spec.targets[0].clusters.cluster_group.as_deref(),
            Some("default")
        );
    }

    #[test]
    fn compressed_resources_decode_to_their_files() {
        let tree = TempTree::new(&[("a/cm.yaml", "kind: ConfigMap\n")]);
        let opts = ApplyOptions {
            compress: true,
            ..ApplyOptions::default()
        };
        let bundle = read_bundle("a", &tree.path("a"), None, &opts).expect("read");
        let files = decode_resources(&bundle.spec.resources).expect("decode");
        assert_eq!(
            files.get("cm.yaml").map(Vec::as_slice),
            Some(&b"kind: ConfigMap\n"[..])
        );
    }

    #[test]
    fn binary_files_are_base64_gzip() {
        let tree = TempTree::new(&[("bin/chart.tgz", "")]);
        std::fs::write(tree.path("bin/chart.tgz"), [0x1f, 0x8b, 0xff, 0x00]).expect("write");
        let bundle =
            read_bundle("b", &tree.path("bin"), None, &ApplyOptions::default()).expect("ok");
        let resource = &bundle.spec.resources[0];
        assert_eq!(resource.encoding.as_deref(), Some("base64+gz"));
        let compressed = base64::engine::general_purpose::STANDARD
            .decode(resource.content.as_deref().unwrap_or_default())
            .expect("base64");
        let mut data = Vec::new();
        flate2::read::GzDecoder::new(&compressed[..])
            .read_to_end(&mut data)
            .expect("gzip");
        assert_eq!(data, [0x1f, 0x8b, 0xff, 0x00]);
    }

    #[test]
    fn a_broken_fleet_yaml_names_file_and_line() {
        let tree = TempTree::new(&[("x/fleet.yaml", "helm:\n  timeoutSeconds: soon\n")]);
        let err = read_bundle(
            "x",
            &tree.path("x"),
            Some(&tree.path("x/fleet.yaml")),
            &ApplyOptions::default(),
        )
        .expect_err("bad fleet.yaml");
        let message = err.to_string();
        assert!(message.contains("fleet.yaml:2:"), "{message}");
    }

    #[test]
    fn a_local_chart_that_is_not_there_is_refused_naming_the_field() {
        let tree = TempTree::new(&[
            ("app/fleet.yaml", "helm:\n  chart: ./chart\n"),
            ("app/chart/Chart.yaml", "name: app\nversion: 0.1.0\n"),
            (
                "gone/fleet.yaml",
                "targetCustomizations:\n- name: prod\n  helm:\n    chart: ./missing\n",
            ),
            (
                "remote/fleet.yaml",
                "helm:\n  chart: oci://registry.example/app\n",
            ),
            (
                "repo/fleet.yaml",
                "helm:\n  repo: https://charts.example\n  chart: app\n",
            ),
        ]);
        for ok in ["app", "remote", "repo"] {
            let dir = tree.path(ok);
            let options = dir.join("fleet.yaml");
            read_bundle(ok, &dir, Some(&options), &ApplyOptions::default())
                .unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        let dir = tree.path("gone");
        let options = dir.join("fleet.yaml");
        let error = read_bundle("gone", &dir, Some(&options), &ApplyOptions::default())
            .expect_err("a missing chart");
        let message = error.to_string();
        assert!(
            message.starts_with("targetCustomizations[prod].helm.chart: chart \"./missing\""),
            "{message}"
        );
        assert!(message.contains("gone/missing"), "{message}");
    }
}
