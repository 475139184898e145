//! The elector's state machine under virtual time (`tokio::time::pause`), several replicas on
//! one in-memory Lease. This tests the decisions and their timing only; behaviour against a
//! real API server is in `tests/` on a real control plane.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::{
    ElectionConfig, ElectionEvent, ElectionMetrics, Elector, ElectorHandle, LeaseEvent, LeaseStore,
    Role, StoreError, Timings,
};

/// One Lease with resourceVersion preconditions, shared by several replicas.
#[derive(Default)]
struct Shared {
    lease: Mutex<Option<Lease>>,
    revision: AtomicUsize,
    events: Mutex<Option<broadcast::Sender<LeaseEvent>>>,
}

impl Shared {
    fn sender(&self) -> broadcast::Sender<LeaseEvent> {
        let mut events = self.events.lock().expect("lock");
        events
            .get_or_insert_with(|| broadcast::channel(1024).0)
            .clone()
    }

    fn store(self: &Arc<Self>) -> MemoryStore {
        MemoryStore {
            shared: self.clone(),
            partitioned: Arc::new(AtomicBool::new(false)),
            writes: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn holder(&self) -> Option<String> {
        let lease = self.lease.lock().expect("lock");
        lease
            .as_ref()
            .and_then(|l| l.spec.as_ref())
            .and_then(|s| s.holder_identity.clone())
    }

    fn put(&self, mut lease: Lease) -> Lease {
        let revision = self.revision.fetch_add(1, Ordering::SeqCst) + 1;
        lease.metadata.resource_version = Some(revision.to_string());
        *self.lease.lock().expect("lock") = Some(lease.clone());
        let _ = self
            .sender()
            .send(LeaseEvent::Changed(Box::new(lease.clone())));
        lease
    }

    fn delete(&self) {
        *self.lease.lock().expect("lock") = None;
        let _ = self.sender().send(LeaseEvent::Deleted);
    }
}

/// One replica's view: can be cut off from the "API server" (partitioned).
#[derive(Clone)]
struct MemoryStore {
    shared: Arc<Shared>,
    partitioned: Arc<AtomicBool>,
    writes: Arc<AtomicUsize>,
}

impl MemoryStore {
    fn check(&self) -> Result<(), StoreError> {
        if self.partitioned.load(Ordering::SeqCst) {
            Err(StoreError::Other("connection refused".to_owned()))
        } else {
            Ok(())
        }
    }
}

impl LeaseStore for MemoryStore {
    async fn get(&self) -> Result<Option<Lease>, StoreError> {
        self.check()?;
        Ok(self.shared.lease.lock().expect("lock").clone())
    }

    async fn create(&self, lease: &Lease) -> Result<Lease, StoreError> {
        self.check()?;
        self.writes.fetch_add(1, Ordering::SeqCst);
        if self.shared.lease.lock().expect("lock").is_some() {
            return Err(StoreError::Conflict("already exists".to_owned()));
        }
        Ok(self.shared.put(lease.clone()))
    }

    async fn replace(&self, lease: &Lease) -> Result<Lease, StoreError> {
        self.check()?;
        self.writes.fetch_add(1, Ordering::SeqCst);
        let current = self
            .shared
            .lease
            .lock()
            .expect("lock")
            .as_ref()
            .and_then(|l| l.metadata.resource_version.clone());
        if current.is_none() || current != lease.metadata.resource_version {
            return Err(StoreError::Conflict("stale resourceVersion".to_owned()));
        }
        Ok(self.shared.put(lease.clone()))
    }

    fn watch(&self) -> BoxStream<'static, LeaseEvent> {
        let receiver = self.shared.sender().subscribe();
        let partitioned = self.partitioned.clone();
        futures::stream::unfold(receiver, move |mut receiver| {
            let partitioned = partitioned.clone();
            async move {
                loop {
                    match receiver.recv().await {
                        Ok(_) if partitioned.load(Ordering::SeqCst) => continue,
                        Ok(event) => return Some((event, receiver)),
                        Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            }
        })
        .boxed()
    }

    fn name(&self) -> &str {
        "test-lease"
    }
}

fn config(identity: &str) -> ElectionConfig {
    ElectionConfig::new("test-lease", "default", identity, Timings::default()).expect("valid")
}

fn start(shared: &Arc<Shared>, identity: &str) -> (ElectorHandle, MemoryStore) {
    let store = shared.store();
    let handle =
        Elector::with_store(store.clone(), config(identity), ElectionMetrics::default()).spawn();
    (handle, store)
}

fn is_leading(handle: &ElectorHandle) -> bool {
    matches!(handle.role(), Role::Leading(_))
}

/// Moves virtual time on in 100 ms steps, letting every ready task run in between (one big
/// jump would look like a process frozen for that long, which rightly costs leadership).
async fn advance(duration: Duration) {
    let step = Duration::from_millis(100);
    let mut left = duration;
    loop {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        if left.is_zero() {
            return;
        }
        let now = left.min(step);
        tokio::time::advance(now).await;
        left -= now;
    }
}

async fn next_event(events: &mut broadcast::Receiver<ElectionEvent>) -> ElectionEvent {
    tokio::time::timeout(Duration::from_secs(120), events.recv())
        .await
        .expect("an event within 120 virtual seconds")
        .expect("event channel open")
}

async fn wait_event(
    events: &mut broadcast::Receiver<ElectionEvent>,
    matches: impl Fn(&ElectionEvent) -> bool,
) -> (ElectionEvent, Instant) {
    loop {
        let event = next_event(events).await;
        if matches(&event) {
            return (event, Instant::now());
        }
    }
}

#[tokio::test(start_paused = true)]
async fn first_replica_creates_the_lease_and_renews_every_retry_period() {
    let shared = Arc::new(Shared::default());
    let (mut a, store) = start(&shared, "a");
    let leadership = a.leading().await.expect("leads");
    assert!(leadership.still_leading());
    assert_eq!(shared.holder().as_deref(), Some("a"));
    let writes = store.writes.load(Ordering::SeqCst);
    advance(Duration::from_secs(10)).await;
    let renews = store.writes.load(Ordering::SeqCst) - writes;
    assert!(
        (4..=6).contains(&renews),
        "about one renew per 2 s, got {renews}"
    );
    assert!(leadership.still_leading());
}

#[tokio::test(start_paused = true)]
async fn standbys_never_write_while_a_live_leader_holds_the_lease() {
    let shared = Arc::new(Shared::default());
    let (mut a, _) = start(&shared, "a");
    a.leading().await.expect("a leads");
    let (b, b_store) = start(&shared, "b");
    let (c, c_store) = start(&shared, "c");
    for _ in 0..60 {
        advance(Duration::from_secs(1)).await;
        assert!(is_leading(&a) && !is_leading(&b) && !is_leading(&c));
    }
    assert_eq!(b_store.writes.load(Ordering::SeqCst), 0);
    assert_eq!(c_store.writes.load(Ordering::SeqCst), 0);
    assert_eq!(shared.holder().as_deref(), Some("a"));
}

#[tokio::test(start_paused = true)]
async fn released_lease_is_taken_at_once() {
    let shared = Arc::new(Shared::default());
    let (mut a, _) = start(&shared, "a");
    a.leading().await.expect("a leads");
    let (b, _) = start(&shared, "b");
    let mut b_events = b.subscribe();
    advance(Duration::from_secs(3)).await;
    let released_at = Instant::now();
    a.release().await;
    let (event, at) = wait_event(&mut b_events, |e| {
        matches!(e, ElectionEvent::Acquired { .. })
    })
    .await;
    assert_eq!(
        at, released_at,
        "no timer involved: the watch event triggers the takeover"
    );
    let ElectionEvent::Acquired { transitions, .. } = event else {
        unreachable!()
    };
    assert_eq!(
        transitions, 1,
        "the release kept the count; b's acquire adds one"
    );
    assert_eq!(shared.holder().as_deref(), Some("b"));
}

#[tokio::test(start_paused = true)]
async fn partitioned_leader_stops_at_the_renew_deadline_before_anyone_acquires() {
    let shared = Arc::new(Shared::default());
    let (mut a, a_store) = start(&shared, "a");
    let leadership = a.leading().await.expect("a leads");
    let (b, _) = start(&shared, "b");
    let mut a_events = a.subscribe();
    let mut b_events = b.subscribe();
    advance(Duration::from_millis(100)).await;

    a_store.partitioned.store(true, Ordering::SeqCst);
    let (event, _) = wait_event(&mut a_events, |e| {
        matches!(e, ElectionEvent::RenewFailed { .. })
    })
    .await;
    assert!(matches!(event, ElectionEvent::RenewFailed { error } if error.contains("refused")));
    let (_, lost_at) = wait_event(&mut a_events, |e| matches!(e, ElectionEvent::Lost { .. })).await;
    assert!(!leadership.still_leading());
    assert!(leadership.is_cancelled());
    let (_, acquired_at) = wait_event(&mut b_events, |e| {
        matches!(e, ElectionEvent::Acquired { .. })
    })
    .await;
    assert!(
        acquired_at >= lost_at + Duration::from_secs(4),
        "b acquired {:?} after a stopped; the margin is lease duration - renew deadline",
        acquired_at - lost_at
    );
    assert_eq!(shared.holder().as_deref(), Some("b"));

    // Healed, the old leader reads the new holder and stays a standby.
    a_store.partitioned.store(false, Ordering::SeqCst);
    advance(Duration::from_secs(30)).await;
    assert!(!is_leading(&a));
    assert!(is_leading(&b));
}

#[tokio::test(start_paused = true)]
async fn unknown_holder_is_respected_until_its_claim_expires() {
    let shared = Arc::new(Shared::default());
    // A record written by some client-go elector that then died.
    shared.put(Lease {
        metadata: ObjectMeta {
            name: Some("test-lease".to_owned()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some("kube-node-7_8d3c0b5e-uuid".to_owned()),
            lease_duration_seconds: Some(30),
            lease_transitions: Some(9),
            ..Default::default()
        }),
    });
    let started = Instant::now();
    let (a, store) = start(&shared, "a");
    let mut events = a.subscribe();
    let (event, at) =
        wait_event(&mut events, |e| matches!(e, ElectionEvent::Acquired { .. })).await;
    assert_eq!(
        at - started,
        Duration::from_secs(30),
        "exactly when the claim expires"
    );
    assert!(matches!(
        event,
        ElectionEvent::Acquired {
            transitions: 10,
            ..
        }
    ));
    assert_eq!(
        store.writes.load(Ordering::SeqCst),
        1,
        "no write before expiry"
    );
}

#[tokio::test(start_paused = true)]
async fn concurrent_acquires_after_a_release_yield_exactly_one_leader() {
    let shared = Arc::new(Shared::default());
    let (mut a, _) = start(&shared, "a");
    a.leading().await.expect("a leads");
    let standbys: Vec<_> = ["b", "c", "d"]
        .iter()
        .map(|id| start(&shared, id))
        .collect();
    advance(Duration::from_secs(1)).await;
    a.release().await;
    advance(Duration::from_secs(1)).await;
    let leaders: Vec<_> = standbys.iter().filter(|(h, _)| is_leading(h)).collect();
    assert_eq!(leaders.len(), 1, "exactly one of three standbys leads");
    for _ in 0..30 {
        advance(Duration::from_secs(1)).await;
        let count = standbys.iter().filter(|(h, _)| is_leading(h)).count();
        assert_eq!(count, 1);
    }
}

#[tokio::test(start_paused = true)]
async fn deleted_lease_ends_the_term_and_the_election_restarts() {
    let shared = Arc::new(Shared::default());
    let (mut a, _) = start(&shared, "a");
    let leadership = a.leading().await.expect("a leads");
    let mut events = a.subscribe();
    shared.delete();
    let (event, _) = wait_event(&mut events, |e| matches!(e, ElectionEvent::Lost { .. })).await;
    assert!(matches!(event, ElectionEvent::Lost { reason } if reason.contains("deleted")));
    assert!(!leadership.still_leading());
    let again = a.leading().await.expect("leads again after re-creating it");
    assert!(again.still_leading());
    assert_eq!(shared.holder().as_deref(), Some("a"));
}

#[tokio::test(start_paused = true)]
async fn a_foreign_write_preempts_the_leader_at_once() {
    let shared = Arc::new(Shared::default());
    let (mut a, _) = start(&shared, "a");
    let leadership = a.leading().await.expect("a leads");
    let mut lease = shared.lease.lock().expect("lock").clone().expect("lease");
    lease
        .spec
        .get_or_insert_with(Default::default)
        .holder_identity = Some("intruder".to_owned());
    shared.put(lease);
    advance(Duration::from_millis(1)).await;
    assert!(!leadership.still_leading());
    assert!(matches!(a.role(), Role::Standby { holder: Some(h) } if h == "intruder"));
}

#[tokio::test(start_paused = true)]
async fn run_while_leading_stops_work_before_releasing() {
    let shared = Arc::new(Shared::default());
    let (a, _) = start(&shared, "a");
    let shutdown = tokio_util::sync::CancellationToken::new();
    let observed_at_stop = Arc::new(Mutex::new(None));
    let runner = {
        let shutdown = shutdown.clone();
        let shared = shared.clone();
        let observed_at_stop = observed_at_stop.clone();
        tokio::spawn(crate::run_while_leading(a, shutdown, move |leadership| {
            let shared = shared.clone();
            let observed_at_stop = observed_at_stop.clone();
            async move {
                leadership.cancelled().await;
                // Draining: the Lease must still be ours and still renewed.
                tokio::time::sleep(Duration::from_secs(3)).await;
                *observed_at_stop.lock().expect("lock") =
                    Some((leadership.still_leading(), shared.holder()));
            }
        }))
    };
    advance(Duration::from_secs(5)).await;
    assert_eq!(shared.holder().as_deref(), Some("a"));
    shutdown.cancel();
    advance(Duration::from_secs(5)).await;
    runner.await.expect("runner ends");
    assert_eq!(
        observed_at_stop.lock().expect("lock").clone(),
        Some((true, Some("a".to_owned()))),
        "the work finished while the Lease was still held"
    );
    assert_eq!(
        shared.holder().as_deref(),
        Some(""),
        "released after the work stopped"
    );
}

#[tokio::test(start_paused = true)]
async fn a_leader_frozen_past_its_deadline_stops_without_running_its_elector_first() {
    let shared = Arc::new(Shared::default());
    let (mut a, _) = start(&shared, "a");
    let leadership = a.leading().await.expect("a leads");
    // One jump, no task runs in between: like SIGSTOP and SIGCONT 20 s later.
    tokio::time::advance(Duration::from_secs(20)).await;
    assert!(
        !leadership.still_leading(),
        "the deadline check needs no help from the elector task"
    );
    advance(Duration::from_millis(100)).await;
    assert!(leadership.is_cancelled());
}

#[tokio::test(start_paused = true)]
async fn a_requested_handover_stops_the_holder_before_the_requester_acquires() {
    let shared = Arc::new(Shared::default());
    let (mut a, _) = start(&shared, "a");
    let a_term = a.leading().await.expect("a leads");
    let (b, _) = start(&shared, "b");
    let mut b_events = b.subscribe();
    advance(Duration::from_secs(3)).await;
    b.handover_requester().request().await;
    wait_event(&mut b_events, |e| {
        matches!(e, ElectionEvent::Acquired { .. })
    })
    .await;
    assert!(
        !a_term.still_leading() && a_term.is_cancelled(),
        "a's term ended before b acquired"
    );
    assert_eq!(shared.holder().as_deref(), Some("b"));
    // a stays away: b keeps the Lease, and the request is gone from it.
    advance(Duration::from_secs(40)).await;
    assert!(is_leading(&b) && !is_leading(&a));
    let lease = shared.store().get().await.expect("read").expect("exists");
    assert_eq!(crate::record::handover_requested_by(&lease), None);
    // b goes away: a, the only replica left, takes the Lease back.
    b.release().await;
    advance(Duration::from_secs(1)).await;
    assert!(is_leading(&a), "a leads again once b released");
}

#[tokio::test(start_paused = true)]
async fn a_passive_elector_only_watches_and_contends_when_told() {
    let shared = Arc::new(Shared::default());
    let a_store = shared.store();
    let a = Elector::with_store(a_store.clone(), config("a"), ElectionMetrics::default())
        .passive()
        .spawn();
    advance(Duration::from_secs(5)).await;
    assert!(
        !is_leading(&a) && shared.holder().is_none(),
        "a free Lease stays free"
    );
    assert_eq!(a_store.writes.load(Ordering::SeqCst), 0);
    let (mut b, _) = start(&shared, "b");
    let b_term = b.leading().await.expect("b leads");
    // b stops contending: its term ends at once and the Lease is released.
    b.set_contending(false).await;
    advance(Duration::from_secs(1)).await;
    assert!(!b_term.still_leading());
    assert_eq!(shared.holder().as_deref(), Some(""), "released");
    let mut a_events = a.subscribe();
    a.set_contending(true).await;
    wait_event(&mut a_events, |e| {
        matches!(e, ElectionEvent::Acquired { .. })
    })
    .await;
    advance(Duration::from_secs(20)).await;
    assert!(is_leading(&a) && !is_leading(&b), "b does not take it back");
}
