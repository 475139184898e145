//! The clusters `fleet test` and `fleet target` match against: one described by flags, or
//! Cluster and ClusterGroup objects from a YAML file (group membership from the groups'
//! selectors, as the controller computes it).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use fleet_api::{Cluster, ClusterGroup};
use fleet_render::deployments::{Candidate, candidate};
use fleet_render::target::{ClusterInfo, GroupInfo};

use crate::apply::parse_label;

/// One cluster, described on the command line (Fleet's `fleet test` flags).
#[derive(Debug, Clone, clap::Args)]
pub struct ClusterArgs {
    /// Cluster name to match against.
    #[arg(short = 'N', long = "name", default_value = "local")]
    pub name: String,
    /// Cluster labels to match against (`key=value`, repeatable).
    #[arg(short = 'l', long = "label", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// Cluster group the cluster is in (repeatable).
    #[arg(short = 'g', long = "group")]
    pub groups: Vec<String>,
    /// Labels of those cluster groups (`key=value`, repeatable).
    #[arg(short = 'L', long = "group-label", value_parser = parse_label)]
    pub group_labels: Vec<(String, String)>,
    /// The cluster's namespace (its workspace).
    #[arg(long = "cluster-namespace", default_value = "fleet-local")]
    pub namespace: String,
}

impl ClusterArgs {
    pub fn cluster(&self) -> ClusterInfo {
        let group_labels: BTreeMap<String, String> = self.group_labels.iter().cloned().collect();
        ClusterInfo {
            name: self.name.clone(),
            namespace: self.namespace.clone(),
            labels: self.labels.iter().cloned().collect(),
            annotations: BTreeMap::new(),
            groups: self
                .groups
                .iter()
                .map(|name| GroupInfo {
                    name: name.clone(),
                    labels: group_labels.clone(),
                })
                .collect(),
            values: serde_json::Map::new(),
        }
    }
}

/// The Clusters of a YAML stream of Cluster and ClusterGroup objects (other kinds are
/// ignored), as the controller sees them: each with the groups of its namespace whose
/// selector matches it, and the namespace of its BundleDeployments.
pub fn read_clusters(path: &Path) -> anyhow::Result<Vec<Candidate>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let documents: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let mut clusters = Vec::new();
    let mut groups = Vec::new();
    for document in documents {
        match document.get("kind").and_then(|k| k.as_str()) {
            Some("Cluster") => clusters.push(parse::<Cluster>(path, document)?),
            Some("ClusterGroup") => groups.push(parse::<ClusterGroup>(path, document)?),
            _ => {}
        }
    }
    for cluster in &mut clusters {
        if cluster.metadata.namespace.is_none() {
            cluster.metadata.namespace = Some("fleet-default".to_owned());
        }
    }
    for group in &mut groups {
        if group.metadata.namespace.is_none() {
            group.metadata.namespace = Some("fleet-default".to_owned());
        }
    }
    Ok(candidates(&clusters, &groups))
}

/// The Clusters of `namespace` in the cluster `client` talks to, as the controller sees them
/// (Fleet's `fleet target` reads them there).
pub async fn live_clusters(
    client: &kube::Client,
    namespace: &str,
) -> anyhow::Result<Vec<Candidate>> {
    let list = kube::api::ListParams::default();
    let clusters = kube::Api::<Cluster>::namespaced(client.clone(), namespace)
        .list(&list)
        .await
        .with_context(|| format!("listing the Clusters of {namespace}"))?;
    let groups = kube::Api::<ClusterGroup>::namespaced(client.clone(), namespace)
        .list(&list)
        .await
        .with_context(|| format!("listing the ClusterGroups of {namespace}"))?;
    Ok(candidates(&clusters.items, &groups.items))
}

/// Each Cluster with the groups of its namespace (those whose selector matches it).
fn candidates(clusters: &[Cluster], groups: &[ClusterGroup]) -> Vec<Candidate> {
    clusters.iter().map(|c| candidate(c, groups)).collect()
}

/// One object of the file; a missing `spec` is an empty one, as the API server defaults it.
fn parse<K: serde::de::DeserializeOwned>(
    path: &Path,
    mut document: serde_json::Value,
) -> anyhow::Result<K> {
    let name = document
        .pointer("/metadata/name")
        .and_then(|n| n.as_str())
        .unwrap_or("<unnamed>")
        .to_owned();
    if let Some(object) = document.as_object_mut() {
        object
            .entry("spec")
            .or_insert_with(|| serde_json::json!({}));
    }
    serde_json::from_value(document).map_err(|e| anyhow::anyhow!("{}: {name}: {e}", path.display()))
}

/// `--helm` and `--kustomize`: the tools `fleet test` renders with.
#[derive(Debug, Clone, clap::Args)]
pub struct ToolArgs {
    /// The helm binary.
    #[arg(long, env = "FLEET_HELM", default_value = "helm")]
    pub helm: PathBuf,
    /// The kustomize binary.
    #[arg(long, env = "FLEET_KUSTOMIZE", default_value = "kustomize")]
    pub kustomize: PathBuf,
}
