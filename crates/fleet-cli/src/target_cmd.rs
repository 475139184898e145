//! `fleet target`: the BundleDeployments that the clusters of a file would get from the
//! Bundles of directories, as the controller would create them (names, namespaces, labels,
//! merged options, deployment IDs).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use fleet_api::{Bundle, BundleDeployment, BundleDeploymentSpec, labels};
use fleet_render::target::match_cluster;
use kube::ResourceExt;
use sha2::{Digest as _, Sha256};

use crate::apply::{BundleArgs, read_bundles};
use crate::cluster::read_clusters;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Yaml,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct TargetArgs {
    /// A YAML file of Cluster and ClusterGroup objects to target.
    #[arg(long)]
    clusters: PathBuf,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "yaml")]
    format: Format,
    #[command(flatten)]
    bundles: BundleArgs,
}

pub fn target(args: &TargetArgs) -> anyhow::Result<()> {
    let bundles = read_bundles(&args.bundles)?;
    let clusters = read_clusters(&args.clusters)?;
    let mut deployments = Vec::new();
    for bundle in &bundles {
        for cluster in &clusters {
            let found = match_cluster(&bundle.spec, &cluster.info)
                .with_context(|| format!("bundle {}", bundle.name_any()))?;
            if let Some(found) = found {
                deployments.push(deployment(
                    bundle,
                    &cluster.deployment_namespace,
                    &cluster.info,
                    found.options,
                ));
            }
        }
    }
    let text = match args.format {
        Format::Json => {
            serde_json::to_string_pretty(&serde_json::json!({
                "apiVersion": "v1",
                "kind": "List",
                "items": deployments,
            }))? + "\n"
        }
        Format::Yaml => {
            let mut out = String::new();
            for deployment in &deployments {
                out.push_str("---\n");
                out.push_str(&serde_saphyr::to_string(deployment)?);
            }
            out
        }
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(())
}

/// The BundleDeployment of `bundle` for a cluster.
fn deployment(
    bundle: &Bundle,
    namespace: &str,
    cluster: &fleet_render::target::ClusterInfo,
    options: fleet_api::BundleDeploymentOptions,
) -> BundleDeployment {
    let mut bd_labels: BTreeMap<String, String> = bundle
        .labels()
        .iter()
        .filter(|(k, _)| k.starts_with(labels::FLEET_LABEL_PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    bd_labels.insert(labels::BUNDLE_NAME.to_owned(), bundle.name_any());
    bd_labels.insert(
        labels::BUNDLE_NAMESPACE.to_owned(),
        bundle.namespace().unwrap_or_default(),
    );
    bd_labels.insert(labels::CLUSTER.to_owned(), cluster.name.clone());
    bd_labels.insert(
        labels::CLUSTER_NAMESPACE.to_owned(),
        cluster.namespace.clone(),
    );
    bd_labels.insert(labels::MANAGED.to_owned(), "true".to_owned());
    let id = deployment_id(bundle, &options);
    let mut bd = BundleDeployment::new(
        &bundle.name_any(),
        BundleDeploymentSpec {
            paused: bundle.spec.paused,
            staged_options: options.clone(),
            staged_deployment_id: Some(id.clone()),
            options,
            deployment_id: Some(id),
            depends_on: bundle.spec.depends_on.clone(),
            correct_drift: bundle.spec.options.correct_drift.clone(),
            ..BundleDeploymentSpec::default()
        },
    );
    bd.metadata.namespace = Some(namespace.to_owned());
    bd.metadata.labels = Some(bd_labels);
    bd
}

/// `s-<sha256 of the resources>:<sha256 of the options>`: Fleet's shape of a deployment ID
/// (manifest ID, then options hash); the hashes are fleet-rs's.
fn deployment_id(bundle: &Bundle, options: &fleet_api::BundleDeploymentOptions) -> String {
    let hex = |bytes: Vec<u8>| -> String {
        Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let manifest = hex(serde_json::to_vec(&bundle.spec.resources).unwrap_or_default());
    let options = hex(serde_json::to_vec(options).unwrap_or_default());
    format!("s-{manifest}:{options}")
}
