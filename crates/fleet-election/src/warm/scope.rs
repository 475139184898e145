//! A warm cache's scope under dynamic shards: it lists and watches only the objects whose shard
//! label names a shard this replica holds, so a replica's memory falls with its share of the
//! shards. The API server filters by the label selector (`<label> notin (0-of-4,2-of-4)`: all
//! but the other shards' objects, so objects not labelled yet are seen by everyone); when
//! the held shards change, the watch starts again with the new selector, and the store swaps to
//! the new list in one step (the reflector's `InitDone`), so readers never see a half list.
//! [`Coverage`] says which shards the store holds completely: a reconcile of an object of a
//! shard just taken waits for it, so it never mistakes "not listed yet" for "does not exist".

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use fleet_api::sharding::{ShardLabel, dynamic_selector};

/// Which objects a scoped cache holds: those whose `label` names a shard in `held`.
#[derive(Debug, Clone)]
pub struct Scope {
    pub label: ShardLabel,
    /// The shards held here, as they change (empty until the first is acquired: then only
    /// objects without a shard label of this count are cached).
    pub held: watch::Receiver<BTreeSet<u32>>,
}

/// The shards whose objects a cache holds completely (its last complete list was made with
/// them held); every shard for a cache without a scope.
#[derive(Debug, Clone)]
pub struct Coverage(Option<watch::Receiver<BTreeSet<u32>>>);

impl Coverage {
    /// A cache of every object.
    pub fn all() -> Self {
        Self(None)
    }

    /// Whether the cache holds every object of `shard`.
    pub fn covers(&self, shard: u32) -> bool {
        self.0
            .as_ref()
            .is_none_or(|held| held.borrow().contains(&shard))
    }

    /// One item each time the covered shards change (never for a cache of every object): the
    /// objects of a shard just listed can be looked at now.
    pub fn changes(&self) -> impl futures::Stream<Item = ()> + Send + 'static {
        futures::stream::unfold(self.0.clone(), |covered| async move {
            let mut covered = covered?;
            covered.changed().await.ok()?;
            Some(((), Some(covered)))
        })
    }
}

/// What the cache's task needs to keep [`Coverage`] current: the shards of the list in
/// progress, published when that list is complete.
#[derive(Debug)]
pub(super) struct Covering {
    listing: Arc<Mutex<BTreeSet<u32>>>,
    covered: watch::Sender<BTreeSet<u32>>,
}

impl Covering {
    pub(super) fn new() -> (Self, Coverage) {
        let (covered, coverage) = watch::channel(BTreeSet::new());
        let covering = Self {
            listing: Arc::default(),
            covered,
        };
        (covering, Coverage(Some(coverage)))
    }

    /// The list in progress is in the store (call on `InitDone`, after the reflector).
    pub(super) fn listed(&self) {
        let listed = self
            .listing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        self.covered.send_if_modified(|covered| {
            let changed = *covered != listed;
            *covered = listed;
            changed
        });
    }

    /// The watch events of `api`'s objects in `scope`: a watch per held set, each ended by the
    /// next change of the set (and the store's contents replaced by the next list).
    pub(super) fn watch<K>(
        &self,
        api: Api<K>,
        config: watcher::Config,
        scope: Scope,
    ) -> impl Stream<Item = watcher::Result<watcher::Event<K>>> + Send + 'static
    where
        K: kube::Resource<DynamicType = ()>
            + Clone
            + std::fmt::Debug
            + DeserializeOwned
            + Send
            + Sync
            + 'static,
    {
        let listing = self.listing.clone();
        let changes = scope.held.clone();
        held_sets(scope.held)
            .map(move |held| {
                *listing
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = held.clone();
                let until = next_change(changes.clone(), held.clone());
                let config = match dynamic_selector(scope.label, &held) {
                    Some(selector) => with_selector(config.clone(), &selector),
                    None => config.clone(),
                };
                watcher(api.clone(), config)
                    .default_backoff()
                    .take_until(until)
            })
            .flatten()
    }
}

/// Each held set, the current one first, then every change (ends when the sender is gone).
fn held_sets(held: watch::Receiver<BTreeSet<u32>>) -> impl Stream<Item = BTreeSet<u32>> {
    futures::stream::unfold((held, true), |(mut held, first)| async move {
        if !first && held.changed().await.is_err() {
            return None;
        }
        let set = held.borrow_and_update().clone();
        Some((set, (held, false)))
    })
}

/// Resolves when the held set is no longer `current` (never, once the sender is gone).
async fn next_change(mut held: watch::Receiver<BTreeSet<u32>>, current: BTreeSet<u32>) {
    loop {
        if *held.borrow_and_update() != current {
            return;
        }
        if held.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// `config` selecting also by `selector` (after its own label selector, if any).
fn with_selector(config: watcher::Config, selector: &str) -> watcher::Config {
    let combined = match &config.label_selector {
        Some(own) if !own.is_empty() => format!("{own},{selector}"),
        _ => selector.to_owned(),
    };
    config.labels(&combined)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scope_adds_its_selector_to_the_caches_own() {
        let own = watcher::Config::default().labels("fleet.cattle.io/managed=true");
        assert_eq!(
            with_selector(own, "a in (1-of-2)")
                .label_selector
                .as_deref(),
            Some("fleet.cattle.io/managed=true,a in (1-of-2)")
        );
        assert_eq!(
            with_selector(watcher::Config::default(), "a in (1-of-2)")
                .label_selector
                .as_deref(),
            Some("a in (1-of-2)")
        );
    }

    #[tokio::test]
    async fn coverage_follows_the_completed_lists() {
        let (covering, coverage) = Covering::new();
        assert!(!coverage.covers(0), "nothing before the first list");
        assert!(Coverage::all().covers(7));
        *covering.listing.lock().unwrap_or_else(|e| e.into_inner()) = BTreeSet::from([0, 3]);
        assert!(!coverage.covers(3), "a list in progress covers nothing yet");
        let mut changes = Box::pin(coverage.changes());
        covering.listed();
        assert!(coverage.covers(0) && coverage.covers(3) && !coverage.covers(1));
        tokio::time::timeout(std::time::Duration::from_secs(5), changes.next())
            .await
            .expect("a change is announced");
        let mut never = Box::pin(Coverage::all().changes());
        assert_eq!(
            never.next().await,
            None,
            "a cache of everything never changes"
        );
    }

    #[tokio::test]
    async fn a_watch_ends_when_the_held_shards_change() {
        let (tx, rx) = watch::channel(BTreeSet::from([1]));
        let until = next_change(rx.clone(), BTreeSet::from([1]));
        tokio::pin!(until);
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(50), &mut until)
                .await
                .is_err(),
            "the same set does not end it"
        );
        tx.send_replace(BTreeSet::from([1, 2]));
        tokio::time::timeout(std::time::Duration::from_secs(5), until)
            .await
            .expect("a changed set ends it");
        let sets: Vec<_> = held_sets(rx).take(1).collect().await;
        assert_eq!(sets, vec![BTreeSet::from([1, 2])]);
    }
}
