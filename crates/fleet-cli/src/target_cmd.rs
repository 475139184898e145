//! `fleet target`: the BundleDeployments that the clusters of a file would get from the
//! Bundles of directories: exactly what the controller creates (the same
//! `fleet_render::deployments`), with names, namespaces, labels, merged options and
//! deployment IDs.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use fleet_render::deployments::desired;
use kube::ResourceExt;

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
        let desired =
            desired(bundle, &clusters).with_context(|| format!("bundle {}", bundle.name_any()))?;
        deployments.extend(desired.targets.into_iter().map(|t| t.deployment));
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
