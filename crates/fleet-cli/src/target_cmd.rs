//! `fleet target`, as Fleet's: the Content and the BundleDeployments that clusters would get
//! from a Bundle file (`fleet apply -o` writes one): exactly what the controller creates (the
//! same `fleet_render::deployments`), every target staged at once (no rollout). The clusters
//! are those of the Bundle's namespace in the cluster of the kubeconfig, as in Fleet, or
//! (fleet-rs) those of a YAML file (`--clusters`), with no cluster at all.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{Context, bail};
use fleet_api::{Bundle, BundleNamespaceMapping};
use fleet_render::deployments::{Candidate, desired};
use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt;

use crate::cluster::{live_clusters, read_clusters};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Yaml,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct TargetArgs {
    /// The Bundle resource YAML (several Bundles, one document each, are targeted in turn).
    #[arg(short = 'b', long = "bundle-file")]
    bundle_file: PathBuf,
    /// Override the namespace of the Bundles: targeting searches it for clusters.
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// Print the matched clusters and their groups as YAML on stderr.
    #[arg(short = 'l', long)]
    dump_input_list: bool,
    /// Target the Cluster and ClusterGroup objects of this YAML file instead of those of the
    /// cluster of the kubeconfig.
    #[arg(long)]
    clusters: Option<PathBuf>,
    /// Kubeconfig of the cluster whose Clusters are targeted (without `--clusters`).
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "yaml")]
    format: Format,
}

pub fn target(args: &TargetArgs) -> anyhow::Result<()> {
    let mut bundles = read_bundle_file(&args.bundle_file)?;
    for bundle in &mut bundles {
        if let Some(namespace) = &args.namespace {
            bundle.metadata.namespace = Some(namespace.clone());
        }
    }
    let candidates = candidates(args, &bundles)?;
    let mut objects = Vec::new();
    for (bundle, candidates) in bundles.iter().zip(candidates) {
        let desired = desired(bundle, &candidates)
            .with_context(|| format!("bundle {}", bundle.name_any()))?;
        if args.dump_input_list {
            dump_matched(&candidates, &desired.targets)?;
        }
        objects.push(serde_json::to_value(&desired.content)?);
        for target in desired.targets {
            objects.push(serde_json::to_value(target.deployment)?);
        }
    }
    let text = match args.format {
        Format::Json => {
            serde_json::to_string_pretty(&serde_json::json!({
                "apiVersion": "v1",
                "kind": "List",
                "items": objects,
            }))? + "\n"
        }
        Format::Yaml => {
            let mut out = String::new();
            for object in &objects {
                out.push_str("---\n");
                out.push_str(&serde_saphyr::to_string(object)?);
            }
            out
        }
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(())
}

/// The Bundles of a YAML file (one or more documents; other kinds are refused).
fn read_bundle_file(path: &PathBuf) -> anyhow::Result<Vec<Bundle>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let documents: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let bundles = documents
        .into_iter()
        .filter(|d| !d.is_null())
        .map(|document| {
            let kind = document.get("kind").and_then(|k| k.as_str()).unwrap_or("");
            if kind != "Bundle" {
                bail!(
                    "{}: expected Bundle resources, found {kind:?}",
                    path.display()
                );
            }
            serde_json::from_value(document).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
        })
        .collect::<anyhow::Result<Vec<Bundle>>>()?;
    if bundles.is_empty() {
        bail!("{}: no Bundle in the file", path.display());
    }
    Ok(bundles)
}

/// The clusters each bundle may target: those of `--clusters` (targeting picks by namespace
/// itself), or those of the cluster of the kubeconfig in the bundle's namespace and in those
/// its namespace's BundleNamespaceMappings open to it, as the controller finds them.
fn candidates(args: &TargetArgs, bundles: &[Bundle]) -> anyhow::Result<Vec<Vec<Candidate>>> {
    if let Some(path) = &args.clusters {
        let all = read_clusters(path)?;
        return Ok(bundles.iter().map(|_| all.clone()).collect());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let client = crate::apply::kube_client(args.kubeconfig.as_deref()).await?;
        let mut clusters_of: BTreeMap<String, Vec<Candidate>> = BTreeMap::new();
        let mut all = Vec::new();
        for bundle in bundles {
            let mut candidates = Vec::new();
            for namespace in namespaces_of(&client, bundle).await? {
                if !clusters_of.contains_key(&namespace) {
                    let found = live_clusters(&client, &namespace).await?;
                    clusters_of.insert(namespace.clone(), found);
                }
                candidates.extend(clusters_of[&namespace].iter().cloned());
            }
            all.push(candidates);
        }
        Ok(all)
    })
}

/// The bundle's namespace, then those its namespace's BundleNamespaceMappings open to it.
async fn namespaces_of(client: &kube::Client, bundle: &Bundle) -> anyhow::Result<Vec<String>> {
    let own = bundle
        .namespace()
        .unwrap_or_else(|| "fleet-local".to_owned());
    let list = kube::api::ListParams::default();
    let mappings = kube::Api::<BundleNamespaceMapping>::namespaced(client.clone(), &own)
        .list(&list)
        .await
        .with_context(|| format!("listing the BundleNamespaceMappings of {own}"))?
        .items;
    let mut namespaces = vec![own.clone()];
    if mappings.is_empty() {
        return Ok(namespaces);
    }
    let all: Vec<(String, BTreeMap<String, String>)> = kube::Api::<Namespace>::all(client.clone())
        .list(&list)
        .await
        .context("listing namespaces")?
        .items
        .iter()
        .map(|n| (n.name_any(), n.labels().clone()))
        .collect();
    let mapped = fleet_render::mappings::mapped_namespaces(&own, bundle.labels(), &mappings, &all);
    for error in &mapped.invalid {
        eprintln!("warning: {error}: skipped");
    }
    namespaces.extend(mapped.namespaces);
    Ok(namespaces)
}

/// `-l`: the clusters that matched, with their groups and labels, on stderr.
fn dump_matched(
    candidates: &[Candidate],
    targets: &[fleet_render::deployments::Target],
) -> anyhow::Result<()> {
    let matched: Vec<serde_json::Value> = targets
        .iter()
        .filter_map(|target| {
            candidates.iter().find(|c| {
                c.info.name == target.cluster.name && c.info.namespace == target.cluster.namespace
            })
        })
        .map(|c| {
            serde_json::json!({
                "cluster": {"name": c.info.name, "namespace": c.info.namespace, "labels": c.info.labels},
                "clusterGroups": c.info.groups.iter().map(|g| serde_json::json!({"name": g.name, "labels": g.labels})).collect::<Vec<_>>(),
            })
        })
        .collect();
    eprintln!("{}", serde_saphyr::to_string(&matched)?);
    Ok(())
}
