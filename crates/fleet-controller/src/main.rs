//! `fleet-controller`: Bundles to BundleDeployments, status roll-up, cluster registration.
//! Every replica keeps warm caches of the kinds it reads; only the leader reconciles.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use fleet_api::duration::parse_go_duration;
use fleet_controller::context::Context;
use fleet_controller::metrics::Metrics;
use fleet_controller::plan_budget::PlanBudget;
use fleet_controller::settings::{AgentSettings, Settings, Workers};
use fleet_controller::wiring::{DynamicShards, Term, WarmCaches};
use fleet_controller::{bundles, clusters, import, registration, rollups};
use fleet_election::shards::{Claims, ShardSet};
use fleet_runtime::{Runtime, RuntimeArgs};
use tokio_util::sync::CancellationToken;

/// Fleet's Lease name for the (unsharded) controller.
const LEASE: &str = "fleet-controller-leader-election-shard";

#[derive(Debug, Parser)]
#[command(
    name = "fleet-controller",
    version,
    about = "Bundles to clusters (fleet-rs)"
)]
struct Args {
    #[command(flatten)]
    runtime: RuntimeArgs,
    /// Dynamic shards: objects spread over this many shard Leases, held by the live replicas
    /// (about shards/replicas each, spread over zones); 0: one leader does all.
    #[arg(
        long,
        env = "FLEET_CONTROLLER_SHARDS",
        default_value_t = 0,
        value_parser = clap::value_parser!(u32).range(0..=i64::from(fleet_election::shards::MAX_SHARDS)),
    )]
    shards: u32,
    /// Bundles reconciled at once.
    #[arg(long, env = "BUNDLE_RECONCILER_WORKERS", default_value_t = 8)]
    bundle_workers: u16,
    /// Clusters, ClusterGroups and GitRepos reconciled at once (each).
    #[arg(long, env = "CLUSTER_RECONCILER_WORKERS", default_value_t = 8)]
    cluster_workers: u16,
    /// BundleDeployment writes in flight, all Bundles together.
    #[arg(long, env = "FLEET_WRITE_CONCURRENCY", default_value_t = 32)]
    write_concurrency: usize,
    /// BundleDeployments planned and not yet written, all Bundles together (about 2 KiB
    /// each): bounds the memory of a fan-out. A Bundle targeting more clusters plans alone.
    /// Under dynamic shards, of all replicas together: each has its shards' share.
    #[arg(long, env = "FLEET_MAX_PLANNED_DEPLOYMENTS", default_value_t = 2048)]
    max_planned_deployments: usize,
    /// A Cluster whose agent has not checked in for this long is marked not Ready.
    #[arg(long, env = "FLEET_AGENT_TIMEOUT", default_value = "15m", value_parser = parse_go_duration)]
    agent_timeout: Duration,
    /// Create the `fleet-local` workspace with the Cluster `local` and the ClusterGroup
    /// `default` when missing (Fleet's bootstrap).
    #[arg(long, env = "FLEET_BOOTSTRAP_LOCAL", default_value_t = true, action = clap::ArgAction::Set)]
    bootstrap_local: bool,
    /// The API server URL agents register with (written into registration Secrets).
    #[arg(long, env = "API_SERVER_URL")]
    api_server_url: Option<String>,
    /// A PEM file with that API server's CA.
    #[arg(long, env = "API_SERVER_CA_FILE")]
    api_server_ca_file: Option<PathBuf>,
    /// The image of agents the controller installs and keeps current (Clusters with
    /// `spec.kubeConfigSecret`); without it, manager-initiated import is off.
    #[arg(long, env = "AGENT_IMAGE")]
    agent_image: Option<String>,
    #[arg(long, env = "AGENT_IMAGE_PULL_POLICY", default_value = "IfNotPresent")]
    agent_image_pull_policy: String,
    /// Replicas of a managed agent (a Cluster's `agentReplicas` overrides it).
    #[arg(long, env = "FLEET_AGENT_REPLICA_COUNT", default_value_t = 2)]
    agent_replicas: i32,
}

impl Args {
    fn settings(&self) -> anyhow::Result<Settings> {
        let api_server_ca = match &self.api_server_ca_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?,
            ),
            None => None,
        };
        Ok(Settings {
            agent_timeout: self.agent_timeout,
            api_server_url: self.api_server_url.clone(),
            api_server_ca,
            write_concurrency: self.write_concurrency,
            planned_deployments: self.max_planned_deployments,
            workers: Workers {
                bundles: self.bundle_workers,
                rollups: self.cluster_workers,
            },
            agent: self.agent_image.clone().map(|image| AgentSettings {
                image,
                pull_policy: self.agent_image_pull_policy.clone(),
                replicas: self.agent_replicas,
            }),
        })
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut runtime = Runtime::new("fleet-controller", LEASE, &args.runtime)
        .await
        .context("starting fleet-controller")?;
    let client = runtime.client();
    let metrics = Metrics::register(runtime.registry_mut());
    let reconciles = fleet_runtime::Reconciles::register(runtime.registry_mut());
    let gate =
        fleet_runtime::WriteGate::new(fleet_controller::error::MANAGER, runtime.registry_mut());
    let settings = args.settings()?;
    let shard = args.runtime.shard();
    // Dynamic shards: the BundleDeployment caches follow the shards this replica holds.
    let dynamic = (args.shards > 0).then(|| DynamicShards {
        shards: args.shards,
        held: runtime.held_shards(),
    });
    let caches = Arc::new(WarmCaches::spawn(&client, &shard, dynamic.as_ref()));
    tokio::spawn(
        caches
            .clone()
            .report_sizes(metrics.clone(), Duration::from_secs(5)),
    );
    // Clusters, ClusterGroups, registration and import: the unsharded controller's.
    let unsharded = shard.is_default();
    let bootstrap_local = args.bootstrap_local && unsharded;
    let work = move |claims: Claims, stop: CancellationToken, shards: Option<ShardSet>| {
        let ctx = Arc::new(Context {
            client: client.clone(),
            caches: caches.readers(),
            settings: settings.clone(),
            metrics: metrics.clone(),
            claims,
            gate: gate.clone(),
            memory: Default::default(),
            write_slots: tokio::sync::Semaphore::new(settings.write_concurrency.max(1)),
            plan_budget: PlanBudget::new(
                settings.planned_deployments,
                metrics.planned_deployments.clone(),
            ),
        });
        if let Some(shards) = &shards {
            // The plan budget is the replicas' together: each plans within its shards' share.
            tokio::spawn(ctx.plan_budget.follow_shards(
                shards.held_changes(),
                shards.shards(),
                stop.clone(),
            ));
            let every = Duration::from_secs(5);
            let objects = caches.bundles.reader();
            tokio::spawn(shards.clone().count_objects_of(
                objects,
                bundles::shard_key,
                every,
                stop.clone(),
            ));
        }
        let bootstrap = bootstrap_local
            .then(|| fleet_controller::bootstrap::run(ctx.clone(), client.clone(), stop.clone()));
        let term = Term {
            ctx,
            caches: caches.clone(),
            reconciles: reconciles.clone(),
            shards,
            stop,
        };
        reconcile(term, unsharded, bootstrap)
    };
    runtime.run_claimed(args.shards, work).await?;
    Ok(())
}

/// Every reconciler of a term: the Bundles' and the roll-ups of GitRepos and HelmOps; the
/// unsharded controller's Clusters, ClusterGroups, import and registration; the bootstrap.
async fn reconcile(
    term: Term,
    unsharded: bool,
    bootstrap: Option<impl std::future::Future<Output = ()>>,
) {
    let unsharded_work = async {
        if unsharded {
            futures::join!(
                clusters::run(&term),
                import::run(&term),
                registration::run(&term)
            );
        }
    };
    let bootstrap = async move {
        if let Some(bootstrap) = bootstrap {
            bootstrap.await;
        }
    };
    futures::join!(
        bundles::run(&term),
        rollups::run(&term),
        unsharded_work,
        bootstrap
    );
}
