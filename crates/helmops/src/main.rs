//! `helmops`: HelmOps to Bundles, leader-elected (Lease `fleet-helmops-leader-election-shard`).

use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use fleet_api::HelmOp;
use fleet_election::WarmCache;
use fleet_election::shards::{Claims, ShardSet, object_key};
use fleet_runtime::events::Events;
use fleet_runtime::{Runtime, RuntimeArgs};
use helmops::reconcile::{Context, EVENTS_CONTROLLER, MANAGER, error_policy, reconcile};
use kube::Api;
use kube::runtime::{controller, watcher};
use tokio_util::sync::CancellationToken;

const LEASE: &str = "fleet-helmops-leader-election-shard";

#[derive(Debug, Parser)]
#[command(name = "helmops", version, about = "HelmOps to Bundles (fleet-rs)")]
struct Args {
    #[command(flatten)]
    runtime: RuntimeArgs,
    /// HelmOps reconciled at once (Fleet's `HELMOPS_RECONCILER_WORKERS`).
    #[arg(long, env = "HELMOPS_RECONCILER_WORKERS", default_value_t = 4)]
    workers: u16,
    /// Dynamic shards: HelmOps spread over this many shard Leases, held by the live replicas
    /// (about shards/replicas each, spread over zones); 0: one leader does all.
    #[arg(
        long,
        env = "HELMOPS_SHARDS",
        default_value_t = 0,
        value_parser = clap::value_parser!(u32).range(0..=i64::from(fleet_election::shards::MAX_SHARDS)),
    )]
    shards: u32,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // reqwest uses rustls with the ring provider, as kube does.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse();
    let mut runtime = Runtime::new("helmops", LEASE, &args.runtime)
        .await
        .context("starting helmops")?;
    let client = runtime.client();
    let reconciles = fleet_runtime::Reconciles::register(runtime.registry_mut());
    let gate = fleet_runtime::WriteGate::new(MANAGER, runtime.registry_mut());
    // Only this shard's HelmOps (Fleet's static sharding).
    let helmops = Arc::new(WarmCache::spawn(
        Api::<HelmOp>::all(client.clone()),
        watcher::Config::default().labels(&args.runtime.shard().label_selector()),
    ));
    let workers = args.workers;
    let work = move |claims: Claims, stop: CancellationToken, shards: Option<ShardSet>| {
        let ctx = Arc::new(Context {
            client: client.clone(),
            claims,
            gate: gate.clone(),
            events: Events::new(client.clone(), EVENTS_CONTROLLER),
        });
        let helmops = helmops.clone();
        let reconciles = reconciles.clone();
        if let Some(shards) = &shards {
            let every = std::time::Duration::from_secs(5);
            let counting = shards.clone();
            tokio::spawn(counting.count_objects_of(
                helmops.reader(),
                object_key,
                every,
                stop.clone(),
            ));
        }
        async move {
            let mut controller = helmops
                .controller()
                .await
                .with_config(controller::Config::default().concurrency(workers))
                .graceful_shutdown_on(stop.cancelled_owned());
            if let Some(shards) = shards {
                // A shard acquired: its HelmOps are looked at at once.
                controller = controller.reconcile_all_on(shards.acquired_stream());
            }
            let results =
                controller.run(reconciles.observe("helmop", reconcile), error_policy, ctx);
            fleet_runtime::drain_controller(results).await;
        }
    };
    runtime.run_claimed(args.shards, work).await?;
    Ok(())
}
