//! gitjob's reconciler for one term: what it watches (the GitRepos of its shard, and the
//! GitRepoRestrictions of their namespaces) and how those events map to GitRepos.

use std::sync::Arc;
use std::time::Duration;

use fleet_api::{GitRepo, GitRepoRestriction};
use fleet_election::WarmCache;
use fleet_election::shards::{ShardSet, object_key};
use fleet_runtime::Reconciles;
use kube::ResourceExt;
use kube::runtime::controller;
use kube::runtime::reflector::ObjectRef;
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::reconcile::{error_policy, reconcile};

/// The caches every replica keeps warm, leading or not.
#[derive(Clone)]
pub struct Caches {
    /// The GitRepos of this replica's static shard.
    pub gitrepos: Arc<WarmCache<GitRepo>>,
    pub restrictions: Arc<WarmCache<GitRepoRestriction>>,
}

impl std::fmt::Debug for Caches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caches")
            .field("gitrepos", &self.gitrepos.reader().state().len())
            .finish_non_exhaustive()
    }
}

/// Reconciles GitRepos (`workers` at once) until `stop`: each on its own changes and when a
/// restriction of its namespace changes; with dynamic `shards`, every GitRepo of a shard this
/// replica acquires at once.
pub async fn run(
    ctx: Arc<Context>,
    caches: Caches,
    reconciles: Reconciles,
    workers: u16,
    stop: CancellationToken,
    shards: Option<ShardSet>,
) {
    // A GitRepo is checked against the restrictions: none is reconciled before they are all
    // known, or a restricted repository could be fetched and written once.
    tokio::select! {
        () = caches.restrictions.wait_until_ready() => {}
        () = stop.cancelled() => return,
    }
    let store = caches.gitrepos.reader();
    if let Some(shards) = &shards {
        let every = Duration::from_secs(5);
        let counting = shards.clone();
        tokio::spawn(counting.count_objects_of(store.clone(), object_key, every, stop.clone()));
    }
    let mut controller = caches
        .gitrepos
        .controller()
        .await
        .watches_shared_stream(caches.restrictions.changes().await, move |r| {
            store
                .state()
                .iter()
                .filter(|g| g.namespace() == r.namespace())
                .map(|g| ObjectRef::from_obj(g.as_ref()))
                .collect::<Vec<_>>()
        })
        .with_config(controller::Config::default().concurrency(workers))
        .graceful_shutdown_on(stop.cancelled_owned());
    if let Some(shards) = shards {
        controller = controller.reconcile_all_on(shards.acquired_stream());
    }
    let results = controller.run(reconciles.observe("gitrepo", reconcile), error_policy, ctx);
    fleet_runtime::drain_controller(results).await;
}
