//! Dynamic shards: `N` shard Leases spread over the live replicas, so that more replicas means
//! more throughput and a replica's death pauses only its shards.
//!
//! - Each object belongs to one shard by a stable hash of its key ([`assign::shard_of`],
//!   64-bit FNV-1a as in Kubernetes' sharded list/watch).
//! - Replicas announce themselves with member Leases ([`members`]); every replica computes the
//!   same owner map from the live members ([`assign::assign`]: balanced, zone-aware, stable).
//! - Every replica watches every shard's Lease (an [`Elector`] each) and contends only for
//!   the shards assigned to it, so the Lease still guarantees one holder at a time even while
//!   replicas' views of the membership differ, and an orphaned shard is taken as soon as its
//!   Lease runs out.
//! - A shard assigned away is drained: its term ends (writes stop: `still_leading()` is false)
//!   and its Lease is released; the new owner, already contending, takes it on the release
//!   event. An orphaned shard (its owner died) is taken when its Lease expires.
//! - A write for an object goes out only while [`ShardSet::claim`]'s `Leadership` for the
//!   object's shard is still leading, checked right before the request.
//! - One shard layout at a time. The objects of shard `i` of `N` are not those of any shard of
//!   another count, so replicas run with another `--shards` (or none: one leader) must not
//!   work beside them, as they would during a rolling update that changes the count. The
//!   base Lease, the one an unsharded leader holds, is the layout's: the replicas of `N`
//!   shards hold it together under the identity `N-shards` (a [`Elector::shared`] Lease:
//!   each renews it, none releases it). A replica contends for shards only while it holds
//!   the layout, and each shard's term lies within the layout's ([`Leadership::within`]).
//!   Another layout waits until the last replica of this one is gone and the Lease has run
//!   out (one lease duration), as a standby waits for a dead leader; members count only
//!   replicas of their own layout.

pub mod assign;
pub mod members;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use crate::config::{ElectionConfig, Timings};
use crate::elector::{Elector, ElectorHandle, Role};
use crate::leadership::Leadership;
use crate::metrics::ElectionMetrics;
use assign::Member;

/// The most dynamic shards a group may have: every replica watches every shard's Lease, so a
/// count far beyond the replicas only adds watches (flags refuse more, with this bound).
pub const MAX_SHARDS: u32 = 256;

/// How a replica takes part in a shard group.
#[derive(Debug, Clone)]
pub struct ShardConfig {
    /// The group's base name: shard `i` of `N` elects through `<base>-<i>-of-<N>`.
    pub base: String,
    pub namespace: String,
    pub identity: String,
    /// This replica's zone ("" if unknown).
    pub zone: String,
    pub shards: u32,
    pub timings: Timings,
}

impl ShardConfig {
    /// The Lease of shard `shard`.
    pub fn lease(&self, shard: u32) -> String {
        format!("{}-{shard}-of-{}", self.base, self.shards)
    }

    /// The identity under which the replicas of this layout hold the base Lease together.
    pub fn layout_identity(&self) -> String {
        layout_identity(self.shards)
    }
}

/// The holder identity of the base Lease while `shards` dynamic shards hold it.
pub fn layout_identity(shards: u32) -> String {
    format!("{shards}-shards")
}

/// Metrics of a shard group, besides the per-Lease election metrics.
#[derive(Debug, Clone, Default)]
pub struct ShardMetrics {
    /// `fleet_shard_rebalances_total`: times the owner map changed as this replica saw it.
    pub rebalances: Counter,
    /// `fleet_shard_objects{lease}`: objects of each shard this replica holds ([`ShardSet::count_objects`]).
    pub objects: Family<Vec<(String, String)>, Gauge>,
}

impl ShardMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "fleet_shard_rebalances",
            "Times the shard owner map changed (members joined or left)",
            metrics.rebalances.clone(),
        );
        registry.register(
            "fleet_shard_objects",
            "Objects of each shard this replica holds (0 for shards held elsewhere)",
            metrics.objects.clone(),
        );
        metrics
    }
}

/// This replica's view of its shards: which it holds, and the claim to write for an object.
#[derive(Clone)]
pub struct ShardSet {
    config: Arc<ShardConfig>,
    held: Arc<RwLock<BTreeMap<u32, Leadership>>>,
    /// The held shards as a value that can be watched (scoped caches follow it).
    held_set: Arc<watch::Sender<BTreeSet<u32>>>,
    acquired: broadcast::Sender<u32>,
    owners: watch::Receiver<BTreeMap<u32, String>>,
    /// This replica's part in the layout's Lease.
    layout: watch::Receiver<Role>,
    metrics: ShardMetrics,
}

impl std::fmt::Debug for ShardSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardSet")
            .field("base", &self.config.base)
            .field("held", &self.held())
            .finish_non_exhaustive()
    }
}

impl ShardSet {
    /// Starts membership and the shard electors; runs until `shutdown`, then releases every
    /// shard and leaves the group. The returned handle resolves when all is released.
    pub fn spawn(
        client: kube::Client,
        config: ShardConfig,
        metrics: ElectionMetrics,
        shard_metrics: ShardMetrics,
        shutdown: CancellationToken,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let config = Arc::new(config);
        let (acquired, _) = broadcast::channel(64);
        let (owners_tx, owners) = watch::channel(BTreeMap::new());
        let layout = layout_elector(&client, &config, &metrics);
        let set = Self {
            config: config.clone(),
            held: Arc::default(),
            held_set: Arc::new(watch::channel(BTreeSet::new()).0),
            acquired,
            owners,
            layout: layout.as_ref().map_or_else(
                || watch::channel(Role::Standby { holder: None }).1,
                ElectorHandle::roles,
            ),
            metrics: shard_metrics.clone(),
        };
        let (live_tx, live) = watch::channel(Vec::new());
        let membership = members::Membership {
            api: Api::<Lease>::namespaced(client.clone(), &config.namespace),
            base: config.base.clone(),
            me: Member::new(&config.identity, &config.zone),
            shards: config.shards,
            lease_duration: config.timings.lease_duration,
            retry_period: config.timings.retry_period,
        };
        let manager = Manager {
            client,
            set: set.clone(),
            metrics,
            shard_metrics,
            running: BTreeMap::new(),
            owners: BTreeMap::new(),
            layout,
            layout_term: None,
            layout_holder: None,
        };
        let task = tokio::spawn(async move {
            let members = tokio::spawn(membership.run(live_tx, shutdown.clone()));
            manager.run(live, owners_tx, shutdown).await;
            let _ = members.await;
        });
        (set, task)
    }

    /// The number of shards.
    pub fn shards(&self) -> u32 {
        self.config.shards
    }

    /// The shard of an object key (`namespace/name`).
    pub fn shard_of(&self, key: &str) -> u32 {
        assign::shard_of(key, self.config.shards)
    }

    /// The claim under which this replica may write for `key`: the term of the key's shard,
    /// if this replica holds it. Check `still_leading()` on it right before each write.
    pub fn claim(&self, key: &str) -> Option<Leadership> {
        let shard = self.shard_of(key);
        self.held
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&shard)
            .filter(|l| l.still_leading())
            .cloned()
    }

    /// The shards this replica holds now.
    pub fn held(&self) -> Vec<u32> {
        self.held
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|(_, l)| l.still_leading())
            .map(|(shard, _)| *shard)
            .collect()
    }

    /// The shards held here as they change: acquired, released or assigned away (for the warm
    /// caches scoped to them).
    pub fn held_changes(&self) -> watch::Receiver<BTreeSet<u32>> {
        self.held_set.subscribe()
    }

    /// Publishes the held shards after a change of `held`.
    fn publish_held(&self) {
        let held: BTreeSet<u32> = self
            .held
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .keys()
            .copied()
            .collect();
        self.held_set.send_if_modified(|current| {
            let changed = *current != held;
            *current = held;
            changed
        });
    }

    /// Shards as they are acquired (to reconcile their objects at once).
    pub fn acquisitions(&self) -> broadcast::Receiver<u32> {
        self.acquired.subscribe()
    }

    /// One item per shard acquired, for `Controller::reconcile_all_on`: the objects of a
    /// shard this replica just took are looked at at once.
    pub fn acquired_stream(&self) -> impl futures::Stream<Item = ()> + Send + 'static {
        futures::stream::unfold(self.acquisitions(), |mut acquired| async move {
            match acquired.recv().await {
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => Some(((), acquired)),
                Err(broadcast::error::RecvError::Closed) => None,
            }
        })
    }

    /// Sets `fleet_shard_objects{lease}` from the keys (`namespace/name`) of the objects a
    /// replica's cache holds: the count of each shard held here, 0 for the others.
    pub fn count_objects(&self, keys: impl IntoIterator<Item = String>) {
        let held = self.held();
        let mut counts: BTreeMap<u32, i64> = (0..self.shards()).map(|s| (s, 0)).collect();
        for key in keys {
            let shard = self.shard_of(&key);
            if held.contains(&shard) {
                *counts.entry(shard).or_default() += 1;
            }
        }
        for (shard, count) in counts {
            self.metrics
                .objects
                .get_or_create(&vec![("lease".to_owned(), self.config.lease(shard))])
                .set(count);
        }
    }

    /// Keeps `fleet_shard_objects` current for the objects of `store` (sharded by `key`),
    /// every `every`, until `stop`.
    pub async fn count_objects_of<K>(
        self,
        store: kube::runtime::reflector::Store<K>,
        key: fn(&K) -> String,
        every: std::time::Duration,
        stop: CancellationToken,
    ) where
        K: kube::Resource + Clone + 'static,
        K::DynamicType: Eq + std::hash::Hash + Clone,
    {
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => self.count_objects(store.state().iter().map(|o| key(o))),
            }
        }
    }

    /// The owner map as this replica computes it.
    pub fn owners(&self) -> BTreeMap<u32, String> {
        self.owners.borrow().clone()
    }

    /// Whether this replica holds the shard layout (without it, it holds no shard).
    pub fn layout_held(&self) -> bool {
        matches!(&*self.layout.borrow(), Role::Leading(term) if term.still_leading())
    }
}

/// The elector of this replica's part in the layout's Lease (the base Lease, shared by the
/// layout's replicas); `None`, with an error logged, if the config cannot name one.
fn layout_elector(
    client: &kube::Client,
    config: &ShardConfig,
    metrics: &ElectionMetrics,
) -> Option<ElectorHandle> {
    match ElectionConfig::new(
        &config.base,
        &config.namespace,
        config.layout_identity(),
        config.timings,
    ) {
        Ok(election) => Some(
            Elector::new(client.clone(), election, metrics.clone())
                .shared()
                .spawn(),
        ),
        Err(error) => {
            tracing::error!(%error, lease = %config.base, "invalid shard layout election: no shard is taken");
            None
        }
    }
}

/// An object's key, `namespace/name`: what an object is sharded by unless its kind says
/// otherwise.
pub fn object_key<K: kube::Resource>(object: &K) -> String {
    let meta = object.meta();
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    )
}

/// Under what claim a replica writes for an object.
#[derive(Debug, Clone)]
pub enum Claims {
    /// One Lease: every object, during this term.
    Leader(Leadership),
    /// Dynamic shards: an object's writes go out under its shard's claim, if held here.
    Shards(ShardSet),
}

impl Claims {
    /// The claim for the object `key` (`namespace/name`), if this replica may write for it.
    pub fn claim(&self, key: &str) -> Option<Leadership> {
        match self {
            Self::Leader(leadership) => Some(leadership.clone()),
            Self::Shards(shards) => shards.claim(key),
        }
    }
}

/// Runs the electors of the shards assigned to this replica.
struct Manager {
    client: kube::Client,
    set: ShardSet,
    metrics: ElectionMetrics,
    shard_metrics: ShardMetrics,
    running: BTreeMap<u32, ElectorHandle>,
    /// The owner map last computed.
    owners: BTreeMap<u32, String>,
    layout: Option<ElectorHandle>,
    /// This replica's term in the layout's Lease, while it has one.
    layout_term: Option<Leadership>,
    /// The other holder of the layout's Lease last seen while waiting for it.
    layout_holder: Option<String>,
}

impl Manager {
    async fn run(
        mut self,
        mut live: watch::Receiver<Vec<Member>>,
        owners_tx: watch::Sender<BTreeMap<u32, String>>,
        shutdown: CancellationToken,
    ) {
        let config = self.set.config.clone();
        let (roles_tx, mut roles) = tokio::sync::mpsc::channel::<(u32, Role)>(64);
        let mut layout = self.set.layout.clone();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                changed = live.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let members = live.borrow_and_update().clone();
                    let owners = assign::assign(config.shards, &members);
                    if owners_tx.send_if_modified(|current| {
                        let changed = *current != owners;
                        *current = owners.clone();
                        changed
                    }) {
                        self.shard_metrics.rebalances.inc();
                        tracing::info!(group = %config.base, members = members.len(), mine = ?mine(&owners, &config.identity), "shard owners");
                    }
                    self.owners = owners;
                    self.apply(&roles_tx).await;
                }
                changed = layout.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let role = layout.borrow_and_update().clone();
                    self.on_layout(role);
                    self.apply(&roles_tx).await;
                }
                Some((shard, role)) = roles.recv() => self.on_role(shard, role),
            }
        }
        let handles = std::mem::take(&mut self.running);
        futures::future::join_all(handles.into_values().map(ElectorHandle::release)).await;
        // Only this member's term ends: the layout's other replicas still hold its Lease.
        if let Some(layout) = self.layout.take() {
            layout.release().await;
        }
    }

    /// Takes a change of this replica's part in the layout: without it, every shard held here
    /// ends at once (the next [`apply`](Self::apply) releases their Leases).
    fn on_layout(&mut self, role: Role) {
        let config = &self.set.config;
        match role {
            Role::Leading(term) => {
                tracing::info!(lease = %config.base, layout = %config.layout_identity(), "holding the shard layout");
                self.layout_term = Some(term);
            }
            Role::Standby { holder } => {
                if self.layout_term.take().is_some() {
                    tracing::warn!(lease = %config.base, layout = %config.layout_identity(), "lost the shard layout: ending every shard held here");
                } else if holder.is_some() && holder != self.layout_holder {
                    tracing::info!(lease = %config.base, layout = %config.layout_identity(), holder = holder.as_deref().unwrap_or_default(), "waiting for the shard layout: another layout or a single leader holds it");
                }
                self.layout_holder = holder;
                self.remove_all_claims();
            }
        }
    }

    /// Contends for the shards assigned here; drains those assigned away. Every shard's Lease
    /// is watched from the start (passive electors), so a shard assigned here after its owner
    /// died is taken as soon as its Lease runs out as timed from this replica's first look.
    async fn apply(&mut self, roles_tx: &tokio::sync::mpsc::Sender<(u32, Role)>) {
        let config = self.set.config.clone();
        let mine: Vec<u32> = mine(&self.owners, &config.identity);
        let layout = self.layout_term.is_some();
        for shard in 0..config.shards {
            if !self.running.contains_key(&shard) {
                let Some(handle) = self.watch(shard, roles_tx) else {
                    continue;
                };
                self.running.insert(shard, handle);
            }
            let wanted = layout && mine.contains(&shard);
            if !wanted && self.set.held().contains(&shard) {
                tracing::info!(lease = %config.lease(shard), "shard assigned away: draining");
                // The term ends at once (writes stop), then the Lease is released.
                self.remove_claim(shard);
            }
            if let Some(handle) = self.running.get(&shard) {
                handle.set_contending(wanted).await;
            }
        }
    }

    /// A passive elector on shard `shard`'s Lease, reporting its roles to the manager.
    fn watch(
        &self,
        shard: u32,
        roles_tx: &tokio::sync::mpsc::Sender<(u32, Role)>,
    ) -> Option<ElectorHandle> {
        let config = &self.set.config;
        let election = match ElectionConfig::new(
            config.lease(shard),
            &config.namespace,
            &config.identity,
            config.timings,
        ) {
            Ok(election) => election,
            Err(error) => {
                tracing::error!(%error, "invalid shard election");
                return None;
            }
        };
        let handle = Elector::new(self.client.clone(), election, self.metrics.clone())
            .passive()
            .spawn();
        let mut role = handle.roles();
        let tx = roles_tx.clone();
        tokio::spawn(async move {
            loop {
                let current = role.borrow_and_update().clone();
                if tx.send((shard, current)).await.is_err() || role.changed().await.is_err() {
                    return;
                }
            }
        });
        Some(handle)
    }

    fn on_role(&mut self, shard: u32, role: Role) {
        match role {
            Role::Leading(leadership) if self.running.contains_key(&shard) => {
                // Acquired just as the layout was lost: the next `apply` releases it.
                let Some(layout) = &self.layout_term else {
                    return;
                };
                self.set
                    .held
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(shard, leadership.within(layout));
                self.set.publish_held();
                let _ = self.set.acquired.send(shard);
            }
            _ => self.remove_claim(shard),
        }
    }

    /// Ends every shard term held here (the layout is gone).
    fn remove_all_claims(&self) {
        let terms = std::mem::take(
            &mut *self
                .set
                .held
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        if !terms.is_empty() {
            terms.values().for_each(Leadership::end);
            self.set.publish_held();
        }
    }

    fn remove_claim(&self, shard: u32) {
        let term = self
            .set
            .held
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&shard);
        if let Some(term) = term {
            term.end();
            self.set.publish_held();
        }
    }
}

fn mine(owners: &BTreeMap<u32, String>, identity: &str) -> Vec<u32> {
    owners
        .iter()
        .filter(|(_, owner)| *owner == identity)
        .map(|(shard, _)| *shard)
        .collect()
}
