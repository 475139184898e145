//! The fan-out's baseline: a plain client creating as many BundleDeployments with the same
//! concurrency, the physical limit of this control plane.

use std::time::Instant;

use anyhow::Context;
use fleet_api::{BundleDeployment, BundleDeploymentSpec};
use kube::api::ListParams;
use kube::{Api, Client};

use super::counting::{Seen, seen_until, watch_managed};
use super::{create_all, create_namespace};

/// The raw client's create rates, per second.
#[derive(Debug, Clone, Copy)]
pub struct RawRates {
    /// Observed by a watch like the one that counts the fan-out: the ratio's baseline.
    pub watched: f64,
    /// With no watch.
    pub alone: f64,
}

/// Creates `total` BundleDeployments with `options` (as the controller's would have) in the
/// namespace `raw` twice, alone and watched, with `concurrency` requests in flight; deletes
/// them again, out of the controller's way.
pub async fn rates(
    client: &Client,
    total: usize,
    concurrency: usize,
    options: &serde_json::Value,
) -> anyhow::Result<RawRates> {
    let spec = sample_spec(options)?;
    let deployments = |prefix: &str, count: usize| deployments(prefix, count, &spec);
    create_namespace(client, "raw").await?;
    let api: Api<BundleDeployment> = Api::namespaced(client.clone(), "raw");
    // Warm the API server's path for this kind first (discovery, first writes).
    create_all(&api, deployments("warmup", 100), concurrency)
        .await
        .context("the raw client's warm-up creates")?;
    let started = Instant::now();
    create_all(&api, deployments("raw", total), concurrency)
        .await
        .context("the raw client's creates")?;
    let alone = total as f64 / started.elapsed().as_secs_f64();

    // Out of the watch's way, as the controller's fan-out starts with none.
    delete_all(&api)
        .await
        .context("deleting the raw client's first BundleDeployments")?;
    let mut events = watch_managed(client).await?;
    let started = Instant::now();
    let mut seen = Seen::new();
    let (created, seen) = futures::join!(
        create_all(&api, deployments("observed", total), concurrency),
        seen_until(&mut events, &mut seen, total, |_| true),
    );
    created.context("the raw client's observed creates")?;
    seen.context("watching the raw client's creates")?;
    let watched = total as f64 / started.elapsed().as_secs_f64();
    drop(events);

    // The controller watches BundleDeployments in every namespace.
    delete_all(&api)
        .await
        .context("deleting the raw client's BundleDeployments")?;
    Ok(RawRates { watched, alone })
}

/// Deletes every object of `api`. A loaded API server may cut the answer to one large
/// collection delete (its request timeout) after deleting part of it: try again, at most 5
/// times, until none is left.
async fn delete_all(api: &Api<BundleDeployment>) -> anyhow::Result<()> {
    for _ in 0..5 {
        let deleted = api
            .delete_collection(&Default::default(), &Default::default())
            .await;
        let left = api.list(&ListParams::default().limit(1)).await?.items;
        match deleted {
            Ok(_) if left.is_empty() => return Ok(()),
            Ok(_) => eprintln!("BundleDeployments left after a collection delete; again"),
            Err(e) => eprintln!("a collection delete: {e}; again"),
        }
    }
    anyhow::bail!("BundleDeployments left after 5 collection deletes")
}

/// `count` BundleDeployments `<prefix>-<i>` for the raw client, labelled as the controller's.
fn deployments(prefix: &str, count: usize, spec: &BundleDeploymentSpec) -> Vec<BundleDeployment> {
    (0..count)
        .map(|i| {
            let mut bd = BundleDeployment::new(&format!("{prefix}-{i}"), spec.clone());
            bd.metadata.labels = Some(
                [
                    ("fleet.cattle.io/bundle-name".to_owned(), "raw".to_owned()),
                    ("fleet.cattle.io/managed".to_owned(), "true".to_owned()),
                ]
                .into(),
            );
            bd
        })
        .collect()
}

/// A spec the size of the controller's for the bench's Bundles, with `options`.
fn sample_spec(options: &serde_json::Value) -> anyhow::Result<BundleDeploymentSpec> {
    serde_json::from_value(serde_json::json!({
        "deploymentID": "s-0000000000000000000000000000000000000000000000000000000000000000:1111111111111111111111111111111111111111111111111111111111111111",
        "stagedDeploymentID": "s-0000000000000000000000000000000000000000000000000000000000000000:1111111111111111111111111111111111111111111111111111111111111111",
        "options": options, "stagedOptions": options,
    }))
    .context("the raw client's BundleDeployment spec")
}
