//! The update wave after the fan-out: every Bundle changes at once (a commit touching them
//! all), so every BundleDeployment is written again while the caches are full. That is when
//! a controller holds its whole cache and its plans together.

use std::time::Instant;

use anyhow::Context;
use fleet_api::{Bundle, BundleDeployment};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};

use super::counting::{Seen, seen_until, watch_managed};
use super::replicas::{Replica, rss_of};
use super::report::{Mibs, UpdateWave};
use super::{FanoutArgs, NS, bd_writes, bundle_name, requests, resources};

/// Changes every Bundle's manifest and waits until each BundleDeployment deploys the new
/// one; measures the replicas' peak RSS over the wave (the high-water mark is reset first).
pub async fn update_all(
    client: &Client,
    replicas: &[Replica],
    args: &FanoutArgs,
    total: usize,
) -> anyhow::Result<UpdateWave> {
    let before = reset_peaks(replicas);
    let mut events = watch_managed(client).await?;
    let requests_before = requests::requests(client, "fleet.cattle.io").await?;
    let resources = resources(args.resource_kib, 2);
    let manifest = fleet_render::deployments::manifest_id(&serde_json::from_value::<Bundle>(
        serde_json::json!({"metadata": {"name": "any"}, "spec": {"resources": resources}}),
    )?);
    let api: Api<Bundle> = Api::namespaced(client.clone(), NS);
    let started = Instant::now();
    for i in 0..args.bundles {
        let patch = serde_json::json!({"spec": {"resources": resources}});
        api.patch(
            &bundle_name(i),
            &PatchParams::default(),
            &Patch::Merge(patch),
        )
        .await
        .context("updating a Bundle")?;
    }
    let prefix = format!("{manifest}:");
    let deploys_new = |bd: &BundleDeployment| {
        bd.spec
            .deployment_id
            .as_deref()
            .is_some_and(|id| id.starts_with(&prefix))
    };
    seen_until(&mut events, &mut Seen::new(), total, deploys_new).await?;
    let elapsed = started.elapsed();
    let requests_after = requests::requests(client, "fleet.cattle.io").await?;
    Ok(UpdateWave {
        elapsed,
        requests: requests::delta(&requests_before, &requests_after),
        extra_writes: bd_writes(&requests_before, &requests_after) - total as f64,
        before,
        peak: rss_of(replicas, "VmHWM:"),
    })
}

/// Each replica's RSS now, after resetting its high-water mark (`clear_refs` 5).
fn reset_peaks(replicas: &[Replica]) -> Mibs {
    for pid in replicas.iter().filter_map(|r| r.process.pid()) {
        if let Err(e) = std::fs::write(format!("/proc/{pid}/clear_refs"), "5") {
            eprintln!("cannot reset the peak RSS of {pid}: {e}");
        }
    }
    rss_of(replicas, "VmRSS:")
}
