//! `helmops`: HelmOps to Bundles, leader-elected (Lease `fleet-helmops-leader-election-shard`).

use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use fleet_api::HelmOp;
use fleet_election::WarmCache;
use fleet_runtime::bundle_store::BundleStore;
use fleet_runtime::events::Events;
use fleet_runtime::{Runtime, RuntimeArgs};
use helmops::reconcile::{Context, EVENTS_CONTROLLER, MANAGER, error_policy, reconcile};
use kube::Api;
use kube::runtime::{controller, watcher};

const LEASE: &str = "fleet-helmops-leader-election-shard";

#[derive(Debug, Parser)]
#[command(name = "helmops", version, about = "HelmOps to Bundles (fleet-rs)")]
struct Args {
    #[command(flatten)]
    runtime: RuntimeArgs,
    /// HelmOps reconciled at once (Fleet's `HELMOPS_RECONCILER_WORKERS`).
    #[arg(long, env = "HELMOPS_RECONCILER_WORKERS", default_value_t = 4)]
    workers: u16,
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
    runtime
        .run(move |leadership| {
            let writer = gate.writer(leadership.clone());
            let ctx = Arc::new(Context {
                client: client.clone(),
                store: BundleStore::new(client.clone(), writer.clone()),
                writer,
                events: Events::new(client.clone(), EVENTS_CONTROLLER),
            });
            let helmops = helmops.clone();
            let reconciles = reconciles.clone();
            async move {
                let results = helmops
                    .controller()
                    .await
                    .with_config(controller::Config::default().concurrency(workers))
                    .graceful_shutdown_on(leadership.stopped())
                    .run(reconciles.observe("helmop", reconcile), error_policy, ctx);
                fleet_runtime::drain_controller(results).await;
            }
        })
        .await?;
    Ok(())
}
