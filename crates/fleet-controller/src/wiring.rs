//! How the controller's reconcilers run: the warm caches every replica keeps ([`WarmCaches`];
//! under dynamic shards, the Bundles and BundleDeployments of its shards only,
//! [`DynamicShards`]),
//! and one leadership term's [`Term`], which starts a reconciler from a watch and a
//! `reconcile` function. What each reconciler watches, and how events map to its keys, is
//! written beside it (`bundles::run`, `rollups::run`, `clusters::run`, `import::run`,
//! `registration::run`).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use fleet_api::labels::MANAGED;
use fleet_api::sharding::{BUNDLE_SHARD, CLUSTER_SHARD, Shard, ShardLabel, bundle_shard_key};
use fleet_api::{
    Bundle, BundleNamespaceMapping, Cluster, ClusterGroup, ClusterRegistration,
    ClusterRegistrationToken, GitRepo, HelmOp,
};
use fleet_election::shards::{ShardSet, object_key};
use fleet_election::{Scope, WarmCache};
use fleet_runtime::Reconciles;
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::controller::{self, Action};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::context::{Caches, Context, claimed};
use crate::deployed::Deployed;
use crate::placements::{Placement, Placements};
use crate::summary::Placed;

/// How long roll-up reconcilers wait for a burst of changes to end (and then write once).
const ROLLUP_DEBOUNCE: Duration = Duration::from_secs(1);

/// A kind the controller watches and reconciles.
pub trait Watched:
    Resource<DynamicType = ()> + Clone + std::fmt::Debug + DeserializeOwned + Send + Sync + 'static
{
}

impl<K> Watched for K where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + DeserializeOwned
        + Send
        + Sync
        + 'static
{
}

/// The caches every replica keeps warm, leading or not, so that a new leader starts at once.
pub struct WarmCaches {
    pub bundles: WarmCache<Bundle>,
    pub clusters: WarmCache<Cluster>,
    pub groups: WarmCache<ClusterGroup>,
    /// BundleDeployments for the work keyed by their Bundle (Bundles, GitRepo and HelmOp
    /// roll-ups); under dynamic shards, those of the Bundles of this replica's shards.
    pub deployments: WarmCache<Deployed>,
    /// Under dynamic shards: the BundleDeployments of this replica's shards' Clusters, for
    /// their roll-ups, as [`Placement`]s; otherwise `deployments` serves.
    pub placed: Option<WarmCache<Placement>>,
    pub gitrepos: WarmCache<GitRepo>,
    pub helmops: WarmCache<HelmOp>,
    pub tokens: WarmCache<ClusterRegistrationToken>,
    pub registrations: WarmCache<ClusterRegistration>,
    pub mappings: WarmCache<BundleNamespaceMapping>,
    /// Workspaces (for BundleNamespaceMappings), not the cluster namespaces the controller
    /// creates (labelled managed), which never hold Clusters and are most of them.
    pub namespaces: WarmCache<Namespace>,
}

fn warm<K: Watched>(client: &Client, config: watcher::Config) -> WarmCache<K> {
    WarmCache::spawn(Api::<K>::all(client.clone()), config)
}

impl std::fmt::Debug for WarmCaches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.readers().fmt(f)
    }
}

/// Dynamic shards as the caches see them: how many, and which are held here.
#[derive(Debug, Clone)]
pub struct DynamicShards {
    pub shards: u32,
    pub held: watch::Receiver<BTreeSet<u32>>,
}

impl DynamicShards {
    /// The objects labelled `key` with a shard held here, and those not labelled yet (all of
    /// them, or with `unlabelled_key`, those of a shard held here).
    fn scope(&self, key: &'static str, unlabelled_key: Option<fn(&ObjectMeta) -> String>) -> Scope {
        Scope {
            label: ShardLabel {
                key,
                shards: self.shards,
            },
            held: self.held.clone(),
            unlabelled_key,
        }
    }
}

impl WarmCaches {
    /// Starts the caches. Fleet's static sharding: Bundles, GitRepos and HelmOps of `shard`
    /// only (the BundleDeployments too, except on the unsharded controller, whose Cluster
    /// roll-ups count every shard's). Dynamic shards: the Bundles and BundleDeployments of the
    /// shards held here only, by their Bundle's shard and (BundleDeployments, for roll-ups)
    /// by their Cluster's ([`fleet_api::sharding`]).
    pub fn spawn(client: &Client, shard: &Shard, dynamic: Option<&DynamicShards>) -> Self {
        let of_shard = || watcher::Config::default().labels(&shard.label_selector());
        let all = watcher::Config::default;
        let deployments_config = if shard.is_default() {
            all()
        } else {
            of_shard()
        };
        let deployments = Api::<Deployed>::all(client.clone());
        let (deployments, placed) = match dynamic {
            Some(dynamic) => (
                WarmCache::spawn_scoped(
                    deployments,
                    deployments_config.clone(),
                    dynamic.scope(BUNDLE_SHARD, None),
                    crate::deployed::trim,
                ),
                Some(WarmCache::spawn_scoped(
                    Api::<Placement>::all(client.clone()),
                    deployments_config,
                    dynamic.scope(CLUSTER_SHARD, None),
                    crate::placements::trim,
                )),
            ),
            None => (
                WarmCache::spawn_trimmed(deployments, deployments_config, crate::deployed::trim),
                None,
            ),
        };
        let bundles = Api::<Bundle>::all(client.clone());
        let bundles = match dynamic {
            Some(dynamic) => {
                // Every new Bundle is unlabelled until its owner's first reconcile: only
                // the owner keeps it meanwhile (Bundles hold their resources).
                let scope = dynamic.scope(BUNDLE_SHARD, Some(bundle_shard_key));
                WarmCache::spawn_scoped(bundles, of_shard(), scope, |_| {})
            }
            None => WarmCache::spawn(bundles, of_shard()),
        };
        Self {
            bundles,
            clusters: warm(client, all()),
            groups: warm(client, all()),
            deployments,
            placed,
            gitrepos: warm(client, of_shard()),
            helmops: warm(client, of_shard()),
            tokens: warm(client, all()),
            registrations: warm(client, all()),
            mappings: warm(client, all()),
            namespaces: warm(client, all().labels(&format!("{MANAGED}!=true"))),
        }
    }

    /// The BundleDeployments the Cluster roll-ups read.
    pub fn placed(&self) -> Placements {
        match &self.placed {
            Some(placed) => Placements::Projected(placed.reader()),
            None => Placements::Deployments(self.deployments.reader()),
        }
    }

    /// Which shards' objects the Bundle and BundleDeployment caches hold completely.
    pub fn coverages(&self) -> [fleet_election::Coverage; 3] {
        let placed = self.placed.as_ref().map(WarmCache::coverage);
        let deployments = self.deployments.coverage();
        [
            self.bundles.coverage(),
            deployments.clone(),
            placed.unwrap_or(deployments),
        ]
    }

    /// Records the caches' sizes in `metrics` every `every`, for as long as the process runs.
    pub async fn report_sizes(self: Arc<Self>, metrics: crate::metrics::Metrics, every: Duration) {
        loop {
            metrics.cached("bundles", self.bundles.reader().state().len());
            metrics.cached("bundledeployments", self.deployments.reader().state().len());
            if let Some(placed) = &self.placed {
                metrics.cached("placements", placed.reader().state().len());
            }
            metrics.cached("clusters", self.clusters.reader().state().len());
            tokio::time::sleep(every).await;
        }
    }

    /// What the reconcilers read.
    pub fn readers(&self) -> Caches {
        Caches {
            bundles: self.bundles.reader(),
            clusters: self.clusters.reader(),
            groups: self.groups.reader(),
            deployments: self.deployments.reader(),
            placed: self.placed(),
            coverage: self.coverages(),
            gitrepos: self.gitrepos.reader(),
            mappings: self.mappings.reader(),
            namespaces: self.namespaces.reader(),
        }
    }
}

/// One leadership term (or one replica's dynamic shards): what starting a reconciler needs.
#[derive(Clone)]
pub struct Term {
    pub ctx: Arc<Context>,
    pub caches: Arc<WarmCaches>,
    pub reconciles: Reconciles,
    /// Dynamic shards: an acquired shard's objects are looked at at once.
    pub shards: Option<ShardSet>,
    /// Fires when the term (or the process) ends: reconcilers finish what they do and stop.
    pub stop: CancellationToken,
}

impl std::fmt::Debug for Term {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Term")
            .field("ctx", &self.ctx)
            .field("sharded", &self.shards.is_some())
            .finish_non_exhaustive()
    }
}

impl Term {
    /// A reconciler of `cache`'s objects: all of them at the start, and again whenever this
    /// replica acquires a shard or a BundleDeployment cache has listed newly held shards (an
    /// object of a shard whose list is not in yet waits for that).
    pub async fn controller<K: Watched>(&self, cache: &WarmCache<K>) -> Controller<K> {
        let controller = cache.controller().await;
        match &self.shards {
            Some(shards) => {
                let listed = self.caches.coverages().map(|c| c.changes().boxed());
                let triggers = futures::stream::select_all(
                    listed.into_iter().chain([shards.acquired_stream().boxed()]),
                );
                controller.reconcile_all_on(triggers)
            }
            None => controller,
        }
    }

    /// `workers` reconciles at once.
    pub fn workers(&self, workers: u16) -> controller::Config {
        controller::Config::default().concurrency(workers)
    }

    /// A roll-up: `workers` at once, each after a burst of changes ended.
    pub fn rollup(&self, workers: u16) -> controller::Config {
        self.workers(workers).debounce(ROLLUP_DEBOUNCE)
    }

    /// Runs `controller` until the term ends: each object reconciled by `reconcile` under
    /// its claim (of its `namespace/name`), observed as `name` (span, duration, errors),
    /// retried by `error_policy`.
    pub async fn run<K, E, F, Fut>(
        &self,
        controller: Controller<K>,
        config: controller::Config,
        name: &'static str,
        reconcile: F,
        error_policy: fn(Arc<K>, &E, Arc<Context>) -> Action,
    ) where
        K: Watched,
        E: std::error::Error + Send + 'static,
        F: Fn(Arc<K>, Arc<Context>) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<Action, E>> + Send + 'static,
    {
        self.run_keyed(
            controller,
            config,
            object_key,
            name,
            reconcile,
            error_policy,
        )
        .await;
    }

    /// [`Term::run`], each object under the claim of the shard `key` gives it.
    pub async fn run_keyed<K, E, F, Fut>(
        &self,
        controller: Controller<K>,
        config: controller::Config,
        key: fn(&K) -> String,
        name: &'static str,
        reconcile: F,
        error_policy: fn(Arc<K>, &E, Arc<Context>) -> Action,
    ) where
        K: Watched,
        E: std::error::Error + Send + 'static,
        F: Fn(Arc<K>, Arc<Context>) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<Action, E>> + Send + 'static,
    {
        let reconcile = claimed(key, self.reconciles.observe(name, reconcile));
        let results = controller
            .with_config(config)
            .graceful_shutdown_on(self.stop.clone().cancelled_owned())
            .run(reconcile, error_policy, self.ctx.clone());
        fleet_runtime::drain_controller(results).await;
    }
}

/// The objects of `store` in `namespace`, as references to reconcile.
pub fn in_namespace<K>(store: &Store<K>, namespace: Option<String>) -> Vec<ObjectRef<K>>
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

/// The object a BundleDeployment names by two of its labels (the name and the namespace).
pub fn label_ref<K: Resource<DynamicType = ()>>(
    bd: &impl Placed,
    name: &str,
    namespace: &str,
) -> Option<ObjectRef<K>> {
    Some(ObjectRef::new(bd.label(name)?).within(bd.label(namespace)?))
}

/// Passes an object on only when its fingerprint changed since it was last seen.
pub fn when_changed<K: Resource<DynamicType = ()>>(
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
