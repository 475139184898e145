//! `fleet-controller`: Bundles to BundleDeployments, status roll-up, cluster registration.
//! Every replica keeps warm caches of the kinds it reads; only the leader reconciles.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use fleet_api::duration::parse_go_duration;
use fleet_api::labels::{
    BUNDLE_NAME, BUNDLE_NAMESPACE, CLUSTER, CLUSTER_NAMESPACE, HELM_OP_NAME, MANAGED, REPO_NAME,
};
use fleet_api::{
    Bundle, BundleDeployment, BundleNamespaceMapping, Cluster, ClusterGroup, ClusterRegistration,
    ClusterRegistrationToken, GitRepo, HelmOp,
};
use fleet_controller::context::{Caches, Context, Settings, claimed, retry};
use fleet_controller::metrics::Metrics;
use fleet_controller::{bundles, clusters, registration, rollups};
use fleet_election::WarmCache;
use fleet_election::shards::{Claims, ShardSet};
use fleet_runtime::{Runtime, RuntimeArgs};
use k8s_openapi::api::core::v1::Namespace;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::runtime::{Controller, controller};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

/// How long roll-up controllers wait for a burst of changes to end.
const ROLLUP_DEBOUNCE: Duration = Duration::from_secs(1);

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
    #[arg(long, env = "FLEET_CONTROLLER_SHARDS", default_value_t = 0)]
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

fn warm<K>(client: &Client, config: watcher::Config) -> Arc<WarmCache<K>>
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    Arc::new(WarmCache::spawn(Api::<K>::all(client.clone()), config))
}

/// The objects of `store` in `namespace`, as references to reconcile.
fn in_namespace<K>(store: &Store<K>, namespace: Option<String>) -> Vec<ObjectRef<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    store
        .state()
        .iter()
        .filter(|o| o.namespace() == namespace)
        .map(|o| ObjectRef::from_obj(o.as_ref()))
        .collect()
}

/// Targeting depends on a Cluster's labels, template values and namespace, not on the rest
/// of its status (which changes with every roll-up): a fingerprint of what matters.
fn targeting_fingerprint(cluster: &Cluster) -> String {
    serde_json::json!([
        cluster.labels(),
        cluster.annotations(),
        cluster.spec.template_values,
        cluster.status.as_ref().and_then(|s| s.namespace.clone()),
        cluster.metadata.deletion_timestamp.is_some(),
    ])
    .to_string()
}

fn group_fingerprint(group: &ClusterGroup) -> String {
    serde_json::json!([group.labels(), group.spec.selector]).to_string()
}

/// Passes an object on only when its fingerprint changed since it was last seen.
fn when_changed<K: Resource<DynamicType = ()>>(
    fingerprint: fn(&K) -> String,
) -> impl Fn(&K) -> bool + Send + Sync {
    let seen = std::sync::Mutex::new(std::collections::HashMap::<ObjectRef<K>, String>::new());
    move |object| {
        let print = fingerprint(object);
        let mut seen = seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        seen.insert(ObjectRef::from_obj(object), print.clone())
            .as_ref()
            != Some(&print)
    }
}

/// The namespaces holding BundleNamespaceMappings.
fn mapping_namespaces(store: &Store<BundleNamespaceMapping>) -> std::collections::BTreeSet<String> {
    store.state().iter().filter_map(|m| m.namespace()).collect()
}

fn label_ref<K: Resource<DynamicType = ()>>(
    object: &impl Resource,
    name: &str,
    namespace: &str,
) -> Option<ObjectRef<K>> {
    let labels = object.meta().labels.as_ref()?;
    Some(ObjectRef::new(labels.get(name)?).within(labels.get(namespace)?))
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
    let api_server_ca = match &args.api_server_ca_file {
        Some(path) => Some(
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
        ),
        None => None,
    };
    let settings = Settings {
        agent_timeout: args.agent_timeout,
        api_server_url: args.api_server_url.clone(),
        api_server_ca,
        write_concurrency: args.write_concurrency,
        agent: args
            .agent_image
            .clone()
            .map(|image| fleet_controller::import::AgentSettings {
                image,
                pull_policy: args.agent_image_pull_policy.clone(),
                replicas: args.agent_replicas,
            }),
    };
    // Fleet's static sharding: Bundles, GitRepos and HelmOps of this shard only (the
    // BundleDeployments too, except on the unsharded controller, whose Cluster roll-ups count
    // every shard's); Clusters, ClusterGroups and registration belong to the unsharded one.
    let shard = args.runtime.shard();
    let of_shard = || watcher::Config::default().labels(&shard.label_selector());
    let bundle_cache = warm::<Bundle>(&client, of_shard());
    let cluster_cache = warm::<Cluster>(&client, watcher::Config::default());
    let group_cache = warm::<ClusterGroup>(&client, watcher::Config::default());
    let bd_cache = if shard.is_default() {
        warm::<BundleDeployment>(&client, watcher::Config::default())
    } else {
        warm::<BundleDeployment>(&client, of_shard())
    };
    let gitrepo_cache = warm::<GitRepo>(&client, of_shard());
    let helmop_cache = warm::<HelmOp>(&client, of_shard());
    let token_cache = warm::<ClusterRegistrationToken>(&client, watcher::Config::default());
    let registration_cache = warm::<ClusterRegistration>(&client, watcher::Config::default());
    let mapping_cache = warm::<BundleNamespaceMapping>(&client, watcher::Config::default());
    // Namespaces for BundleNamespaceMappings: workspaces, not the per-cluster namespaces the
    // controller creates (labelled managed), which never hold Clusters and are most of them.
    let namespace_cache = Arc::new(WarmCache::spawn(
        Api::<Namespace>::all(client.clone()),
        watcher::Config::default().labels(&format!("{MANAGED}!=true")),
    ));
    let (bundle_workers, cluster_workers) = (args.bundle_workers, args.cluster_workers);
    let unsharded = shard.is_default();
    let args_bootstrap_local = args.bootstrap_local && unsharded;

    let work = move |claims: Claims, stop: CancellationToken, shards: Option<ShardSet>| {
        let reconciles = reconciles.clone();
        let ctx = Arc::new(Context {
            client: client.clone(),
            caches: Caches {
                bundles: bundle_cache.reader(),
                clusters: cluster_cache.reader(),
                groups: group_cache.reader(),
                deployments: bd_cache.reader(),
                gitrepos: gitrepo_cache.reader(),
                mappings: mapping_cache.reader(),
                namespaces: namespace_cache.reader(),
            },
            settings: settings.clone(),
            metrics: metrics.clone(),
            claims,
            gate: gate.clone(),
            memory: Default::default(),
            write_slots: tokio::sync::Semaphore::new(settings.write_concurrency.max(1)),
        });
        let caches = (
            bundle_cache.clone(),
            cluster_cache.clone(),
            group_cache.clone(),
            bd_cache.clone(),
            gitrepo_cache.clone(),
            token_cache.clone(),
            registration_cache.clone(),
            mapping_cache.clone(),
            namespace_cache.clone(),
            helmop_cache.clone(),
        );
        let bootstrap = args_bootstrap_local
            .then(|| fleet_controller::bootstrap::run(ctx.clone(), client.clone(), stop.clone()));
        if let Some(shards) = &shards {
            let every = Duration::from_secs(5);
            let counting = shards.clone();
            tokio::spawn(counting.count_objects_of(bundle_cache.reader(), every, stop.clone()));
        }
        async move {
            let bootstrap = async move {
                if let Some(bootstrap) = bootstrap {
                    bootstrap.await;
                }
            };
            let (
                bundle_cache,
                cluster_cache,
                group_cache,
                bd_cache,
                gitrepo_cache,
                token_cache,
                registration_cache,
                mapping_cache,
                namespace_cache,
                helmop_cache,
            ) = caches;
            let config = |workers| controller::Config::default().concurrency(workers);
            let leadership = Stop(stop);
            // Roll-ups wait for a burst of changes to end (and write once).
            let rollup = |workers| config(workers).debounce(ROLLUP_DEBOUNCE);
            let (b1, b2, b3, b4) = (
                bundle_cache.reader(),
                bundle_cache.reader(),
                bundle_cache.reader(),
                bundle_cache.reader(),
            );
            let (m1, m2) = (mapping_cache.reader(), mapping_cache.reader());
            let cluster_changed = when_changed::<Cluster>(targeting_fingerprint);
            let group_changed = when_changed::<ClusterGroup>(group_fingerprint);
            let namespace_changed =
                when_changed::<Namespace>(|n| serde_json::json!(n.labels()).to_string());
            let bundles = rescan(bundle_cache.controller().await, shards.as_ref())
                .watches_shared_stream(cluster_cache.changes().await, move |c| {
                    if !cluster_changed(&c) {
                        return Vec::new();
                    }
                    // Bundles of its namespace, and of namespaces that map others.
                    let mut refs = in_namespace(&b1, c.namespace());
                    for namespace in mapping_namespaces(&m1) {
                        if Some(&namespace) != c.namespace().as_ref() {
                            refs.extend(in_namespace(&b1, Some(namespace)));
                        }
                    }
                    refs
                })
                .watches_shared_stream(mapping_cache.changes().await, move |m| {
                    in_namespace(&b3, m.namespace())
                })
                .watches_shared_stream(namespace_cache.changes().await, move |n| {
                    if !namespace_changed(&n) {
                        return Vec::new();
                    }
                    mapping_namespaces(&m2)
                        .into_iter()
                        .flat_map(|namespace| in_namespace(&b4, Some(namespace)))
                        .collect()
                })
                .watches_shared_stream(group_cache.changes().await, move |g| {
                    if group_changed(&g) {
                        in_namespace(&b2, g.namespace())
                    } else {
                        Vec::new()
                    }
                })
                .with_config(config(bundle_workers))
                .graceful_shutdown_on(leadership.stopped())
                .run(
                    claimed(reconciles.observe("bundle", bundles::reconcile)),
                    bundles::error_policy,
                    ctx.clone(),
                );
            let bundle_status = rescan(bundle_cache.controller().await, shards.as_ref())
                .watches_shared_stream(bd_cache.changes().await, |bd| {
                    label_ref::<Bundle>(bd.as_ref(), BUNDLE_NAME, BUNDLE_NAMESPACE)
                })
                .with_config(rollup(cluster_workers))
                .graceful_shutdown_on(leadership.stopped())
                .run(
                    claimed(reconciles.observe("bundle-status", bundles::reconcile_status)),
                    retry,
                    ctx.clone(),
                );
            let gitrepos = rescan(gitrepo_cache.controller().await, shards.as_ref())
                .watches_shared_stream(bd_cache.changes().await, |bd| {
                    label_ref::<GitRepo>(bd.as_ref(), REPO_NAME, BUNDLE_NAMESPACE)
                })
                // A Bundle's Ready condition decides its GitRepo's (one that cannot be
                // targeted has no BundleDeployments to say so).
                .watches_shared_stream(bundle_cache.changes().await, |bundle| {
                    Some(
                        ObjectRef::<GitRepo>::new(bundle.labels().get(REPO_NAME)?)
                            .within(&bundle.namespace()?),
                    )
                })
                .with_config(rollup(cluster_workers))
                .graceful_shutdown_on(leadership.stopped())
                .run(
                    claimed(reconciles.observe("gitrepo-status", rollups::reconcile_gitrepo)),
                    retry,
                    ctx.clone(),
                );
            let helmops = rescan(helmop_cache.controller().await, shards.as_ref())
                .watches_shared_stream(bd_cache.changes().await, |bd| {
                    label_ref::<HelmOp>(bd.as_ref(), HELM_OP_NAME, BUNDLE_NAMESPACE)
                })
                .with_config(rollup(cluster_workers))
                .graceful_shutdown_on(leadership.stopped())
                .run(
                    claimed(reconciles.observe("helmop-status", rollups::reconcile_helmop)),
                    retry,
                    ctx.clone(),
                );
            // Clusters, ClusterGroups, agents and registration: the unsharded controller's.
            let unsharded_work = {
                let ctx = ctx.clone();
                let reconciles = reconciles.clone();
                let leadership = leadership.clone();
                async move {
                    if !unsharded {
                        return;
                    }
                    let clusters = rescan(cluster_cache.controller().await, shards.as_ref())
                        .watches_shared_stream(bd_cache.changes().await, |bd| {
                            let labels = bd.labels();
                            let (name, ns) = (labels.get(CLUSTER)?, labels.get(CLUSTER_NAMESPACE)?);
                            Some(ObjectRef::<Cluster>::new(name).within(ns))
                        })
                        .with_config(rollup(cluster_workers))
                        .graceful_shutdown_on(leadership.stopped())
                        .run(
                            claimed(
                                reconciles.observe("cluster-status", clusters::reconcile_cluster),
                            ),
                            retry,
                            ctx.clone(),
                        );
                    let g1 = group_cache.reader();
                    let groups = rescan(group_cache.controller().await, shards.as_ref())
                        .watches_shared_stream(cluster_cache.changes().await, move |c| {
                            in_namespace(&g1, c.namespace())
                        })
                        .with_config(rollup(cluster_workers))
                        .graceful_shutdown_on(leadership.stopped())
                        .run(
                            claimed(
                                reconciles
                                    .observe("clustergroup-status", clusters::reconcile_group),
                            ),
                            retry,
                            ctx.clone(),
                        );
                    let imports = rescan(cluster_cache.controller().await, shards.as_ref())
                        .graceful_shutdown_on(leadership.stopped())
                        .run(
                            claimed(
                                reconciles
                                    .observe("cluster-import", fleet_controller::import::reconcile),
                            ),
                            retry,
                            ctx.clone(),
                        );
                    let tokens = rescan(token_cache.controller().await, shards.as_ref())
                        .graceful_shutdown_on(leadership.stopped())
                        .run(
                            claimed(
                                reconciles
                                    .observe("registration-token", registration::reconcile_token),
                            ),
                            retry,
                            ctx.clone(),
                        );
                    let registrations =
                        rescan(registration_cache.controller().await, shards.as_ref())
                            .graceful_shutdown_on(leadership.stopped())
                            .run(
                                claimed(
                                    reconciles.observe(
                                        "registration",
                                        registration::reconcile_registration,
                                    ),
                                ),
                                retry,
                                ctx,
                            );
                    futures::join!(
                        fleet_runtime::drain_controller(imports),
                        fleet_runtime::drain_controller(clusters),
                        fleet_runtime::drain_controller(groups),
                        fleet_runtime::drain_controller(tokens),
                        fleet_runtime::drain_controller(registrations)
                    );
                }
            };
            futures::join!(
                fleet_runtime::drain_controller(bundles),
                fleet_runtime::drain_controller(bundle_status),
                fleet_runtime::drain_controller(gitrepos),
                fleet_runtime::drain_controller(helmops),
                unsharded_work,
                bootstrap
            );
        }
    };
    if args.shards > 0 {
        runtime
            .run_sharded(args.shards, move |shards, stop| {
                work(Claims::Shards(shards.clone()), stop, Some(shards))
            })
            .await?;
    } else {
        runtime
            .run(move |leadership| {
                work(Claims::Leader(leadership.clone()), leadership.token(), None)
            })
            .await?;
    }
    Ok(())
}

/// Dynamic shards: the objects of a shard this replica acquires are looked at at once.
fn rescan<K>(controller: Controller<K>, shards: Option<&ShardSet>) -> Controller<K>
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    match shards {
        Some(shards) => controller.reconcile_all_on(shards.acquired_stream()),
        None => controller,
    }
}

/// When a term's (or the process's) work is told to stop, for `graceful_shutdown_on`.
#[derive(Clone)]
struct Stop(CancellationToken);

impl Stop {
    fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + Sync + 'static {
        self.0.clone().cancelled_owned()
    }
}
