//! What the reconcilers share during one leadership term: the client, the warm caches, the
//! settings, metrics, and the claims that gate writes (the controller's Lease, or each
//! object's shard).

use std::sync::Arc;
use std::time::Duration;

use std::collections::BTreeMap;

use fleet_api::{Bundle, BundleNamespaceMapping, Cluster, ClusterGroup, GitRepo};

use fleet_election::shards::Claims;
use fleet_election::{Coverage, Leadership};
use futures::FutureExt as _;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Namespace;
use kube::runtime::controller::Action;
use kube::runtime::reflector::Store;
use kube::{Client, ResourceExt};

use crate::error::NotLeading;
use crate::metrics::Metrics;
pub use crate::settings::{AgentSettings, Settings};
use fleet_render::deployments::Candidate;
pub use fleet_render::deployments::deployment_namespace;
use fleet_runtime::{WriteError, WriteGate, Writer};

/// The warm caches, kept on every replica.
#[derive(Clone)]
pub struct Caches {
    pub bundles: Store<Bundle>,
    pub clusters: Store<Cluster>,
    pub groups: Store<ClusterGroup>,
    /// BundleDeployments by their Bundle's shard (all of them without dynamic shards).
    pub deployments: Store<crate::deployed::Deployed>,
    /// What the Cluster roll-ups read: under dynamic shards, the projections of their
    /// Clusters' shards' BundleDeployments; otherwise `deployments`.
    pub placed: crate::placements::Placements,
    /// Which shards' objects the Bundle store and those two hold completely.
    pub coverage: [Coverage; 3],
    pub gitrepos: Store<GitRepo>,
    pub mappings: Store<BundleNamespaceMapping>,
    /// Namespaces (their labels, for BundleNamespaceMappings).
    pub namespaces: Store<Namespace>,
}

impl std::fmt::Debug for Caches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caches")
            .field("bundles", &self.bundles.state().len())
            .field("clusters", &self.clusters.state().len())
            .field("deployments", &self.deployments.state().len())
            .finish_non_exhaustive()
    }
}

/// How every controller retries a failed reconcile: log it, try again in 5 s.
pub fn retry<K: kube::Resource<DynamicType = ()>, E: std::fmt::Display>(
    object: Arc<K>,
    error: &E,
    _ctx: Arc<Context>,
) -> kube::runtime::controller::Action {
    tracing::warn!(kind = %K::kind(&()), name = ?object.meta().name, namespace = ?object.meta().namespace, %error, "reconcile failed; retrying");
    kube::runtime::controller::Action::requeue(Duration::from_secs(5))
}

/// Server-side applies `status` (JSON) to the status of `namespace/name` as the controller.
/// Apply, not a merge patch: a field the controller set before and leaves out now (a count
/// back to zero, an emptied list) is removed, while fields of other writers (gitjob on
/// GitRepos) stay.
pub async fn apply_status<K>(
    ctx: &Context,
    namespace: &str,
    name: &str,
    status: serde_json::Value,
) -> Result<(), WriteError>
where
    K: kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    let api = kube::Api::<K>::namespaced(ctx.client.clone(), namespace);
    ctx.writer()
        .patch_status(
            &api,
            name,
            &kube::api::PatchParams::apply(crate::error::MANAGER).force(),
            &kube::api::Patch::Apply(body),
        )
        .await?;
    ctx.metrics.writes.inc();
    Ok(())
}

/// Deletes `namespace/name` of kind `K` if it exists (in the background; counted as a write).
pub async fn delete<K>(ctx: &Context, namespace: &str, name: &str) -> Result<(), WriteError>
where
    K: kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api = kube::Api::<K>::namespaced(ctx.client.clone(), namespace);
    if ctx
        .writer()
        .delete(&api, name, &kube::api::DeleteParams::background())
        .await?
    {
        ctx.metrics.writes.inc();
    }
    Ok(())
}

/// Shared by the reconcilers of one term.
pub struct Context {
    pub client: Client,
    pub caches: Caches,
    pub settings: Settings,
    pub metrics: Metrics,
    /// Under what claim writes go out: the term of the controller's Lease, or (dynamic
    /// shards) the term of each object's shard, set for the duration of its reconcile by
    /// [`claimed`].
    pub claims: Claims,
    /// Every write goes through it, under the claim of the moment ([`Context::writer`]).
    pub gate: WriteGate,
    /// What this term remembers between reconciles.
    pub memory: crate::memory::Memory,
    /// Limits BundleDeployment writes in flight across all Bundles.
    pub write_slots: tokio::sync::Semaphore,
    /// Limits BundleDeployments planned and not yet written across all Bundles.
    pub plan_budget: crate::plan_budget::PlanBudget,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

tokio::task_local! {
    /// The claim of the object being reconciled ([`claimed`]).
    static CLAIM: Leadership;
}

/// How soon a reconcile of a shard just taken looks again while its caches are being listed
/// (a fallback: every object is looked at again when the list is in, `Term::controller`).
const LISTING_RECHECK: Duration = Duration::from_secs(2);

/// `reconcile`, run only under the claim of its object's shard (`key`, e.g. `namespace/name`):
/// with dynamic shards, an object of a shard this replica does not hold is left to its owner,
/// one of a shard whose caches are still being listed waits for them, and every
/// [`Context::check_leading`] during the reconcile asks the object's shard.
pub fn claimed<K, E, F, Fut>(
    key: fn(&K) -> String,
    reconcile: F,
) -> impl Fn(Arc<K>, Arc<Context>) -> BoxFuture<'static, Result<Action, E>>
where
    K: kube::Resource,
    E: Send + 'static,
    F: Fn(Arc<K>, Arc<Context>) -> Fut,
    Fut: std::future::Future<Output = Result<Action, E>> + Send + 'static,
{
    move |object, ctx| {
        let key = key(&object);
        match ctx.claims.claim(&key) {
            Some(_) if !ctx.cached(&key) => {
                futures::future::ready(Ok(Action::requeue(LISTING_RECHECK))).boxed()
            }
            Some(claim) => CLAIM.scope(claim, reconcile(object, ctx)).boxed(),
            None => futures::future::ready(Ok(Action::await_change())).boxed(),
        }
    }
}

impl Context {
    /// The writer for the reconcile in progress: under its object's claim ([`claimed`]), else
    /// the controller's Lease; with dynamic shards, nothing outside a claimed reconcile.
    pub fn writer(&self) -> Writer {
        CLAIM
            .try_with(|claim| self.gate.writer(claim.clone()))
            .unwrap_or_else(|_| match &self.claims {
                Claims::Leader(leadership) => self.gate.writer(leadership.clone()),
                // Outside a claimed reconcile no shard vouches for the write.
                Claims::Shards(_) => self.gate.refusing(),
            })
    }

    /// The writer for `key` (`namespace/name`) outside a reconcile: its shard's claim if this
    /// replica holds it, the controller's Lease without dynamic shards.
    pub fn writer_for(&self, key: &str) -> Writer {
        match self.claims.claim(key) {
            Some(claim) => self.gate.writer(claim),
            None => self.gate.refusing(),
        }
    }

    /// Whether the caches hold every object of `key`'s shard (always, without dynamic shards).
    pub fn cached(&self, key: &str) -> bool {
        match &self.claims {
            Claims::Leader(_) => true,
            Claims::Shards(shards) => {
                let shard = shards.shard_of(key);
                self.caches.coverage.iter().all(|c| c.covers(shard))
            }
        }
    }

    /// Dynamic shards, when this term has them.
    pub fn dynamic_shards(&self) -> Option<&fleet_election::shards::ShardSet> {
        match &self.claims {
            Claims::Leader(_) => None,
            Claims::Shards(shards) => Some(shards),
        }
    }

    /// Whether writes would go out now (work that only leads to writes stops early).
    pub fn check_leading(&self) -> Result<(), NotLeading> {
        if self.writer().still_leading() {
            Ok(())
        } else {
            Err(NotLeading)
        }
    }

    /// The clusters `bundle` may target, with their groups, as targeting sees them: those of
    /// its namespace and of the namespaces BundleNamespaceMappings open to it (shared by the
    /// reconciles that need the same ones at once, [`crate::candidates`]).
    pub fn candidates(&self, bundle: &Bundle) -> Arc<[Candidate]> {
        let own = bundle.namespace().unwrap_or_default();
        let mappings = self.caches.mappings.state();
        let mut namespaces = vec![own.clone()];
        if mappings
            .iter()
            .any(|m| m.metadata.namespace.as_deref() == Some(own.as_str()))
        {
            let all: Vec<(String, BTreeMap<String, String>)> = self
                .caches
                .namespaces
                .state()
                .iter()
                .map(|n| (n.name_any(), n.labels().clone()))
                .collect();
            let mapped = fleet_render::mappings::mapped_namespaces(
                &own,
                bundle.labels(),
                mappings.iter().map(AsRef::as_ref),
                &all,
            );
            for error in &mapped.invalid {
                tracing::warn!(bundle = %bundle.name_any(), namespace = %own, %error, "invalid BundleNamespaceMapping: skipped");
            }
            namespaces.extend(mapped.namespaces);
        }
        self.memory.candidates.get(
            &namespaces,
            &self.caches.clusters.state(),
            &self.caches.groups.state(),
        )
    }

    /// Whether BundleNamespaceMappings exist in `namespace` (its bundles may then target
    /// clusters elsewhere).
    pub fn has_mappings(&self, namespace: &str) -> bool {
        self.caches
            .mappings
            .state()
            .iter()
            .any(|m| m.metadata.namespace.as_deref() == Some(namespace))
    }
}
