//! A warm cache's scope under dynamic shards: it lists and watches only the objects whose shard
//! label names a shard this replica holds, so a replica's memory falls with its share of the
//! shards. The API server filters by label selectors: a watch per held shard
//! (`<label>=<i>-of-<N>`) and one for the objects not labelled yet, or labelled under another
//! count (`<label> notin (...)`), which every replica sees until their writer relabels them.
//! With the key such objects are sharded by ([`Scope::unlabelled_key`]), a replica keeps only
//! those of its shards (new objects are then not in every replica's memory until they are
//! labelled), and lists them again when its shards change. Taking a shard lists that shard
//! only; releasing one drops its objects; the other shards' objects stay as they are (the
//! `merge` module). [`Coverage`] says which shards the store holds completely: a reconcile of
//! an object of a shard just taken waits for it, so it never mistakes "not listed yet" for
//! "does not exist".

use std::collections::{BTreeSet, HashMap, VecDeque};

use futures::stream::{BoxStream, SelectAll};
use futures::{Stream, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher::{self, Event, watcher};
use serde::de::DeserializeOwned;
use tokio::sync::{oneshot, watch};

use fleet_api::sharding::{ShardLabel, dynamic_selector};

use super::merge::{Merge, Out, Source};

/// Which objects a scoped cache holds: those whose `label` names a shard in `held`.
#[derive(Debug, Clone)]
pub struct Scope {
    pub label: ShardLabel,
    /// The shards held here, as they change (empty until the first is acquired: then only
    /// objects without a shard label of this count are cached).
    pub held: watch::Receiver<BTreeSet<u32>>,
    /// The key (`namespace/name`) an object without a shard label of this count is sharded
    /// by, the one its writer labels it from: with it, such an object is kept only by the
    /// replica holding its shard; without it, by every replica until it is labelled.
    pub unlabelled_key: Option<fn(&ObjectMeta) -> String>,
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

/// Keeps [`Coverage`] current: which held shards' objects are all in the cache.
#[derive(Debug)]
pub(super) struct Covering {
    covered: watch::Sender<BTreeSet<u32>>,
}

impl Covering {
    pub(super) fn new() -> (Self, Coverage) {
        let (covered, coverage) = watch::channel(BTreeSet::new());
        (Self { covered }, Coverage(Some(coverage)))
    }

    fn set(&self, shard: u32, covered: bool) {
        self.covered.send_if_modified(|shards| {
            if covered {
                shards.insert(shard)
            } else {
                shards.remove(&shard)
            }
        });
    }
}

/// One item of the merged stream still to be handled.
enum Pending<K> {
    Yield(watcher::Result<Event<K>>),
    Cover(u32),
}

/// The watches of a scoped cache: one per held shard (`<label>=<i>-of-<N>`) and one for the
/// objects without a shard label of this count (`<label> notin (...)`), merged by [`Merge`]
/// into the events of one store. Taking a shard lists that shard only; releasing one deletes
/// its objects from the store; the other shards' objects stay as they are.
pub(super) struct Watches<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    api: Api<K>,
    config: watcher::Config,
    label: ShardLabel,
    unlabelled_key: Option<fn(&ObjectMeta) -> String>,
    /// Stops the watch of the objects not labelled yet (to start it again).
    unlabelled_stop: Option<oneshot::Sender<()>>,
    /// `None` once the shard set is gone (the process is stopping).
    held: Option<watch::Receiver<BTreeSet<u32>>>,
    current: BTreeSet<u32>,
    streams: SelectAll<BoxStream<'static, (Source, watcher::Result<Event<K>>)>>,
    stops: HashMap<u32, oneshot::Sender<()>>,
    merge: Merge<K>,
    pending: VecDeque<Pending<K>>,
    store: Store<K>,
    covering: Covering,
}

impl<K> Watches<K>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    /// The merged events of `api`'s objects in `scope` for the store `store` (which the
    /// events feed, and which deletes are taken from).
    pub(super) fn stream(
        api: Api<K>,
        config: watcher::Config,
        scope: Scope,
        store: Store<K>,
        covering: Covering,
    ) -> impl Stream<Item = watcher::Result<Event<K>>> + Send + 'static {
        let mut watches = Self {
            api,
            config,
            label: scope.label,
            unlabelled_key: scope.unlabelled_key,
            unlabelled_stop: None,
            held: Some(scope.held),
            current: BTreeSet::new(),
            streams: SelectAll::new(),
            stops: HashMap::new(),
            merge: Merge::default(),
            // An empty store at once (ready), then each watch's objects as they are listed.
            pending: VecDeque::from([
                Pending::Yield(Ok(Event::Init)),
                Pending::Yield(Ok(Event::InitDone)),
            ]),
            store,
            covering,
        };
        watches.follow_held();
        futures::stream::unfold(watches, Self::next)
    }

    async fn next(mut self) -> Option<(watcher::Result<Event<K>>, Self)> {
        loop {
            // Everything yielded before is in the store when this runs again (the reflector
            // applies an event before it asks for the next).
            while let Some(pending) = self.pending.pop_front() {
                match pending {
                    Pending::Yield(event) => return Some((event, self)),
                    Pending::Cover(shard) if self.current.contains(&shard) => {
                        self.covering.set(shard, true);
                    }
                    Pending::Cover(_) => {}
                }
            }
            let held_changed = async {
                match &mut self.held {
                    Some(held) => held.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                alive = held_changed => {
                    if alive {
                        self.follow_held();
                    } else {
                        self.held = None;
                    }
                }
                Some((source, event)) = self.streams.next() => match event {
                    Ok(event) => {
                        let Some(event) = self.kept(source, event) else {
                            continue;
                        };
                        let store = &self.store;
                        let cached = |key: &ObjectRef<K>| store.get(key).map(|o| (*o).clone());
                        let out = self.merge.on_event(source, event, cached);
                        self.queue(out);
                    }
                    Err(error) => self.pending.push_back(Pending::Yield(Err(error))),
                },
                else => return None,
            }
        }
    }

    /// `event` as far as the cache keeps it: an object not labelled yet of a shard not held
    /// here is not kept (not listed; an update of one is a delete, which the merge drops
    /// unless the object was kept).
    fn kept(&self, source: Source, event: Event<K>) -> Option<Event<K>> {
        let (Source::Unlabelled, Some(key)) = (source, self.unlabelled_key) else {
            return Some(event);
        };
        let ours = |object: &K| {
            let shard = crate::shards::assign::shard_of(&key(object.meta()), self.label.shards);
            self.current.contains(&shard)
        };
        match event {
            Event::InitApply(object) if !ours(&object) => None,
            Event::Apply(object) if !ours(&object) => Some(Event::Delete(object)),
            event => Some(event),
        }
    }

    fn queue(&mut self, out: Vec<Out<K>>) {
        self.pending.extend(out.into_iter().map(|o| match o {
            Out::Event(event) => Pending::Yield(Ok(event)),
            Out::Covered(shard) => Pending::Cover(shard),
        }));
    }

    /// Starts the watches of newly held shards; stops those of released ones and deletes
    /// their objects. Starts the watch of the objects not labelled yet, again when it keeps
    /// only the held shards' objects and they changed.
    fn follow_held(&mut self) {
        let Some(held) = &mut self.held else {
            return;
        };
        let wanted = held.borrow_and_update().clone();
        for shard in self
            .current
            .difference(&wanted)
            .copied()
            .collect::<Vec<_>>()
        {
            if let Some(stop) = self.stops.remove(&shard) {
                let _ = stop.send(());
            }
            self.covering.set(shard, false);
            let store = &self.store;
            let cached = |key: &ObjectRef<K>| store.get(key).map(|o| (*o).clone());
            let out = self.merge.on_release(shard, cached);
            self.queue(out);
        }
        for shard in wanted
            .difference(&self.current)
            .copied()
            .collect::<Vec<_>>()
        {
            self.start(Source::Shard(shard));
        }
        let changed = self.current != wanted;
        self.current = wanted;
        if self.unlabelled_stop.is_none() || (changed && self.unlabelled_key.is_some()) {
            if let Some(stop) = self.unlabelled_stop.take() {
                let _ = stop.send(());
                self.merge.relist_unlabelled();
            }
            self.start(Source::Unlabelled);
        }
    }

    /// Starts the watch of `source`.
    fn start(&mut self, source: Source) {
        let selector = match source {
            Source::Shard(shard) => format!("{}={}", self.label.key, self.label.value(shard)),
            Source::Unlabelled => dynamic_selector(self.label, &BTreeSet::new())
                .unwrap_or_else(|| format!("!{}", self.label.key)),
        };
        let config = with_selector(self.config.clone(), &selector);
        let events = watcher(self.api.clone(), config).default_backoff();
        // A shard's watch ends when the shard is released; that of the objects not labelled
        // yet when it starts again.
        let (stop, stopped) = oneshot::channel::<()>();
        match source {
            Source::Shard(shard) => {
                self.stops.insert(shard, stop);
            }
            Source::Unlabelled => self.unlabelled_stop = Some(stop),
        }
        let events = events.take_until(stopped);
        let events = events.map(move |event| (source, event)).boxed();
        self.streams.push(events);
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
    async fn coverage_follows_what_is_covered_and_released() {
        let (covering, coverage) = Covering::new();
        assert!(!coverage.covers(0), "nothing before the first list");
        assert!(Coverage::all().covers(7));
        let mut changes = Box::pin(coverage.changes());
        covering.set(3, true);
        assert!(coverage.covers(3) && !coverage.covers(1));
        tokio::time::timeout(std::time::Duration::from_secs(5), changes.next())
            .await
            .expect("a change is announced");
        covering.set(3, false);
        assert!(!coverage.covers(3), "a released shard is not covered");
        let mut never = Box::pin(Coverage::all().changes());
        assert_eq!(
            never.next().await,
            None,
            "a cache of everything never changes"
        );
    }
}
