//! `gitjob`: GitRepos to Bundles, leader-elected. Every replica keeps the GitRepo cache warm
//! and serves push webhooks; only the leader fetches and writes Bundles.

use fleet_bundle::files::SizeLimits;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use fleet_api::duration::parse_go_duration;
use fleet_api::sharding::Shard;
use fleet_api::{GitRepo, GitRepoRestriction};
use fleet_election::WarmCache;
use fleet_election::shards::Claims;
use fleet_election::shards::ShardSet;
use fleet_runtime::{Runtime, RuntimeArgs};
use gitjob::context::{Context, Settings};
use gitjob::controller::Caches;
use gitjob::metrics::Metrics;
use gitjob::webhook::{self, Receiver};
use kube::runtime::watcher;
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

/// Fleet's Lease name for the (unsharded) gitops controller.
const LEASE: &str = "fleet-gitops-leader-election-shard";

#[derive(Debug, Parser)]
#[command(name = "gitjob", version, about = "GitRepos to Bundles (fleet-rs)")]
struct Args {
    #[command(flatten)]
    runtime: RuntimeArgs,
    /// Address of the push webhook receiver (served by every replica).
    #[arg(
        long,
        env = "FLEET_WEBHOOK_BIND_ADDRESS",
        default_value = "0.0.0.0:8082"
    )]
    webhook_bind_address: SocketAddr,
    /// Accept push webhooks for GitRepos that have no webhook secret (neither
    /// `spec.webhookSecret` nor the `gitjob-webhook` Secret). Unsafe: anyone who reaches the
    /// receiver can then record commits on them. Off by default.
    #[arg(long, env = "GITJOB_WEBHOOK_ALLOW_UNSIGNED")]
    webhook_allow_unsigned: bool,
    /// Where fetched repositories are cached (default: a `gitjob` directory in the system
    /// temp dir).
    #[arg(long, env = "GITJOB_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Limit of one git network operation (Fleet's `gitClientTimeout`).
    #[arg(long, env = "GIT_CLIENT_TIMEOUT", default_value = "30s", value_parser = parse_go_duration)]
    git_client_timeout: Duration,
    /// Dynamic shards: GitRepos spread over this many shard Leases, held by the live replicas
    /// (about shards/replicas each, spread over zones); 0: one leader does all.
    #[arg(
        long,
        env = "GITJOB_SHARDS",
        default_value_t = 0,
        value_parser = clap::value_parser!(u32).range(0..=i64::from(fleet_election::shards::MAX_SHARDS)),
    )]
    shards: u32,
    /// GitRepos reconciled at once (Fleet's `GITREPO_RECONCILER_WORKERS`).
    #[arg(long, env = "GITREPO_RECONCILER_WORKERS", default_value_t = 8)]
    workers: u16,
    /// Git network operations at once.
    #[arg(long, env = "GITJOB_CONCURRENT_GIT", default_value_t = 4)]
    concurrent_git: usize,
    /// The largest file read from a repository, in bytes (checked before reading it).
    #[arg(long, env = "GITJOB_MAX_FILE_SIZE", default_value_t = SizeLimits::DEFAULT_FILE)]
    max_file_size: u64,
    /// The helm binary that fetches a chart's dependencies into its Bundle, as Fleet's reader
    /// does (so downstream clusters need no access to their repositories); without it the
    /// agent fetches them when it installs the chart.
    #[arg(long, env = "FLEET_HELM")]
    helm: Option<PathBuf>,
    /// The most bytes the files of one bundle may add up to.
    #[arg(long, env = "GITJOB_MAX_BUNDLE_SIZE", default_value_t = SizeLimits::DEFAULT_BUNDLE)]
    max_bundle_size: u64,
}

impl Args {
    fn settings(&self) -> Settings {
        Settings {
            cache_dir: self
                .cache_dir
                .clone()
                .unwrap_or_else(|| std::env::temp_dir().join("gitjob")),
            git_timeout: self.git_client_timeout,
            concurrent_git: self.concurrent_git,
            limits: SizeLimits {
                file: self.max_file_size,
                bundle: self.max_bundle_size,
            },
            helm: self.helm.clone(),
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut runtime = Runtime::new("gitjob", LEASE, &args.runtime)
        .await
        .context("starting gitjob")?;
    let client = runtime.client();
    let metrics = Metrics::register(runtime.registry_mut());
    let reconciles = fleet_runtime::Reconciles::register(runtime.registry_mut());
    let gate = fleet_runtime::WriteGate::new(gitjob::reconcile::MANAGER, runtime.registry_mut());
    let settings = args.settings();
    std::fs::create_dir_all(&settings.cache_dir)
        .with_context(|| format!("creating the cache dir {}", settings.cache_dir.display()))?;

    // Warm on every replica: a new leader starts from it. Only this shard's GitRepos (Fleet's
    // static sharding).
    let shard = args.runtime.shard();
    let gitrepos = Arc::new(WarmCache::spawn(
        Api::<GitRepo>::all(client.clone()),
        watcher::Config::default().labels(&shard.label_selector()),
    ));
    // Kept for as long as the receiver serves: the cache stops when dropped.
    let webhook_cache = webhook_gitrepos(&client, &shard, &gitrepos);
    let receiver = Receiver {
        client: client.clone(),
        namespace: args.runtime.namespace.clone(),
        gitrepos: webhook_cache.reader(),
        metrics: metrics.clone(),
        allow_unsigned: args.webhook_allow_unsigned,
        writer: gate.unclaimed("push webhook"),
    };
    let address = args.webhook_bind_address;
    let webhooks = webhook::serve(address, receiver, runtime.shutdown_token())
        .await
        .with_context(|| format!("binding the webhook receiver to {address}"))?;

    let caches = Caches {
        gitrepos,
        restrictions: Arc::new(WarmCache::spawn(
            Api::<GitRepoRestriction>::all(client.clone()),
            watcher::Config::default(),
        )),
    };
    let workers = args.workers;
    let controller = move |claims: Claims, stop: CancellationToken, shards: Option<ShardSet>| {
        let ctx = Arc::new(Context::new(
            client.clone(),
            settings.clone(),
            metrics.clone(),
            claims,
            gate.clone(),
            caches.restrictions.reader(),
        ));
        gitjob::controller::run(
            ctx,
            caches.clone(),
            reconciles.clone(),
            workers,
            stop,
            shards,
        )
    };
    runtime.run_claimed(args.shards, controller).await?;
    let _ = webhooks.await;
    drop(webhook_cache);
    Ok(())
}

/// The GitRepos webhooks are taken for (every replica serves them): the chart's Service sends
/// webhooks to the unsharded gitjob, which takes them for every shard's GitRepos.
fn webhook_gitrepos(
    client: &Client,
    shard: &Shard,
    own: &Arc<WarmCache<GitRepo>>,
) -> Arc<WarmCache<GitRepo>> {
    if shard.is_default() {
        let all = Api::<GitRepo>::all(client.clone());
        Arc::new(WarmCache::spawn(all, watcher::Config::default()))
    } else {
        own.clone()
    }
}
