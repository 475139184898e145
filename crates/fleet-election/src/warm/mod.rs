//! Caches kept warm on every replica, so a new leader's controllers start from memory.
//!
//! A [`WarmCache`] runs a watcher and reflector from process start, leader or not (standbys
//! only read). When a replica acquires its Lease, [`WarmCache::controller`] builds a
//! kube-runtime `Controller` on that cache: it reconciles every cached object at once and then
//! follows changes, with no cold re-list on failover. Run it inside
//! [`run_while_leading`](crate::run_while_leading) with
//! `.graceful_shutdown_on(leadership.stopped())`.
//!
//! Under dynamic shards a cache may hold only the objects of the shards this replica holds
//! ([`WarmCache::spawn_scoped`], [`scope`]).

mod merge;
pub mod scope;

use std::fmt::Debug;
use std::hash::Hash;
use std::time::Duration;

use futures::StreamExt;
use kube::Api;
use kube::runtime::reflector::{self, ReflectHandle, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use scope::{Coverage, Covering, Scope, Watches};

/// How many change notifications a slow consumer may lag behind before the reflector waits.
const BUFFER: usize = 1024;

/// A reflector of one kind that runs for the life of the process.
pub struct WarmCache<K>
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    reader: Store<K>,
    /// The shards whose objects the cache holds (every shard without a scope).
    coverage: Coverage,
    /// Asks the cache's task for a new subscriber.
    requests: mpsc::UnboundedSender<oneshot::Sender<ReflectHandle<K>>>,
    task: JoinHandle<()>,
}

impl<K> Debug for WarmCache<K>
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WarmCache")
            .field("objects", &self.reader.state().len())
            .finish_non_exhaustive()
    }
}

/// A failing watch, reported when it starts failing and then once a minute while it fails
/// (the watcher retries with backoff meanwhile), so that a missing CRD or a refused list is
/// never silent and never floods the log.
#[derive(Debug, Default)]
struct Failing {
    since: Option<std::time::Instant>,
    reported: Option<std::time::Instant>,
}

impl Failing {
    const EVERY: Duration = Duration::from_secs(60);

    fn report<K: kube::Resource<DynamicType = ()>>(&mut self, error: &watcher::Error) {
        let now = std::time::Instant::now();
        let since = *self.since.get_or_insert(now);
        if self
            .reported
            .is_some_and(|at| now.duration_since(at) < Self::EVERY)
        {
            return;
        }
        self.reported = Some(now);
        let kind = K::kind(&());
        let api_version = K::api_version(&());
        let failing_for = now.duration_since(since).as_secs();
        if is_not_found(error) {
            tracing::warn!(%kind, %api_version, failing_for, "{api_version} {kind} is not served by the API server: install the CRDs (the chart, or `cargo xtask crds --apply`); waiting for them");
        } else {
            tracing::warn!(%kind, %error, failing_for, "watching {kind} failed; retrying with backoff");
        }
    }
}

/// Whether a watch failed because the API server does not serve the kind (404).
fn is_not_found(error: &watcher::Error) -> bool {
    matches!(
        error,
        watcher::Error::InitialListFailed(kube::Error::Api(status))
            | watcher::Error::WatchFailed(kube::Error::Api(status))
            if status.code == 404
    )
}

impl<K> WarmCache<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
{
    /// Starts watching `api` with `config`.
    pub fn spawn(api: Api<K>, config: watcher::Config) -> Self {
        Self::spawn_trimmed(api, config, |_| {})
    }

    /// [`WarmCache::spawn`], `trim` dropping what the cache's readers never look at from
    /// each object.
    pub fn spawn_trimmed(api: Api<K>, config: watcher::Config, trim: fn(&mut K)) -> Self {
        let events = |_: Store<K>| watcher(api, config).default_backoff();
        Self::spawn_with(events, trim, Coverage::all())
    }

    /// Starts watching the objects of `api` (with `config`) in `scope`: those of the shards
    /// held here, a watch per shard ([`scope`]); `trim` drops what the cache's readers never
    /// look at from each object.
    pub fn spawn_scoped(
        api: Api<K>,
        config: watcher::Config,
        scope: Scope,
        trim: fn(&mut K),
    ) -> Self {
        let (covering, coverage) = Covering::new();
        let events = |store| Watches::stream(api, config, scope, store, covering);
        Self::spawn_with(events, trim, coverage)
    }

    /// A cache fed by the events `events` makes (given the store they feed).
    fn spawn_with<S>(
        events: impl FnOnce(Store<K>) -> S,
        trim: fn(&mut K),
        coverage: Coverage,
    ) -> Self
    where
        S: futures::Stream<Item = watcher::Result<watcher::Event<K>>> + Send + 'static,
    {
        let (reader, writer) = reflector::store_shared(BUFFER);
        let events = events(reader.clone());
        // The reflector waits whenever a subscriber is a buffer behind, and after every
        // (re)list it sends one notification per cached object before yielding. So the
        // subscriber that new ones are cloned from (a clone starts where it is) is drained
        // concurrently, by the task that owns it; controllers drain their own clones.
        let mut template = writer
            .subscribe()
            .expect("store_shared always creates a dispatcher");
        let mut changes = events
            // managedFields are often the largest part of an object and no controller reads them.
            .modify(move |object| {
                object.meta_mut().managed_fields = None;
                trim(object);
            })
            .reflect_shared(writer)
            .boxed();
        let (requests, mut incoming) =
            mpsc::unbounded_channel::<oneshot::Sender<ReflectHandle<K>>>();
        let mut failing = Failing::default();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    change = changes.next() => match change {
                        Some(Ok(_)) => failing = Failing::default(),
                        Some(Err(error)) => failing.report::<K>(&error),
                        None => break,
                    },
                    Some(_) = template.next() => {}
                    Some(reply) = incoming.recv() => {
                        let _ = reply.send(template.clone());
                    }
                }
            }
        });
        Self {
            reader,
            coverage,
            requests,
            task,
        }
    }

    /// Which shards' objects the cache holds completely.
    pub fn coverage(&self) -> Coverage {
        self.coverage.clone()
    }

    /// A new subscriber to this cache's changes, from now on (for a controller's
    /// `watches_shared_stream`). Drop it when done: the reflector waits for laggards.
    pub async fn changes(&self) -> ReflectHandle<K> {
        let (reply, answer) = oneshot::channel();
        let _ = self.requests.send(reply);
        answer
            .await
            .expect("the warm cache's task runs as long as the cache")
    }

    /// The cache, readable on every replica.
    pub fn reader(&self) -> Store<K> {
        self.reader.clone()
    }

    /// Waits until the first list has been loaded.
    pub async fn wait_until_ready(&self) {
        let _ = self.reader.wait_until_ready().await;
    }

    /// A controller fed by this cache: every cached object is reconciled at start (the new
    /// leader catches up), then each change.
    pub async fn controller(&self) -> Controller<K> {
        Controller::for_shared_stream(self.changes().await, self.reader.clone())
            .reconcile_all_on(futures::stream::once(async {}))
    }
}

impl<K> Drop for WarmCache<K>
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    fn drop(&mut self) {
        self.task.abort();
    }
}
