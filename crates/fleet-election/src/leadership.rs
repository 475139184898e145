//! Leadership as a value handed to the work.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

/// One term of leadership. Cheap to clone; every clone sees the same state.
///
/// - [`cancelled`](Self::cancelled) fires when the work must stop: leadership lost (another
///   holder seen, the Lease deleted), the renew deadline passed without a successful renew, or
///   shutdown began.
/// - [`still_leading`](Self::still_leading) is the check to make right before a write: false
///   once the term ended *or* once the renew deadline has passed, even if the elector task has
///   not run yet (e.g. right after the process was frozen and resumed).
///
/// A term may be nested in another ([`within`](Self::within)): a shard's term within the term
/// of its shard layout. It leads only while both do.
#[derive(Clone)]
pub struct Leadership {
    inner: Arc<Term>,
    outer: Option<Arc<Term>>,
}

struct Term {
    lease: String,
    identity: String,
    stop: CancellationToken,
    ended: AtomicBool,
    /// The renew deadline, as nanoseconds after `epoch`.
    deadline_nanos: AtomicU64,
    epoch: Instant,
}

impl std::fmt::Debug for Leadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leadership")
            .field("lease", &self.inner.lease)
            .field("identity", &self.inner.identity)
            .field("still_leading", &self.still_leading())
            .finish()
    }
}

impl Leadership {
    pub(crate) fn new(lease: &str, identity: &str, deadline: Instant) -> Self {
        let epoch = Instant::now();
        let leadership = Self {
            inner: Arc::new(Term {
                lease: lease.to_owned(),
                identity: identity.to_owned(),
                stop: CancellationToken::new(),
                ended: AtomicBool::new(false),
                deadline_nanos: AtomicU64::new(0),
                epoch,
            }),
            outer: None,
        };
        leadership.extend_to(deadline);
        leadership
    }

    /// Leadership that never ends by itself, for running with election disabled
    /// (`--leader-elect=false`: one replica, or tests). Only [`stop`](Self::stop) ends it.
    pub fn unconditional(lease: &str, identity: &str) -> Self {
        const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
        Self::new(lease, identity, Instant::now() + CENTURY)
    }

    /// Tells the work to stop (shutdown of an unconditional leadership).
    pub fn stop(&self) {
        self.end();
    }

    /// The Lease's name.
    pub fn lease(&self) -> &str {
        &self.inner.lease
    }

    /// This replica's holder identity.
    pub fn identity(&self) -> &str {
        &self.inner.identity
    }

    /// True while the Lease is held and renewed within the renew deadline (and, for a term
    /// [`within`](Self::within) another, while that one is too).
    pub fn still_leading(&self) -> bool {
        self.inner.holds() && self.outer.as_ref().is_none_or(|outer| outer.holds())
    }

    /// This term, leading only while `outer` leads too: a shard's term within the term of its
    /// shard layout. Ending `outer` does not fire this term's stop signal (whoever nests them
    /// ends both); [`still_leading`](Self::still_leading) turns false with either.
    pub fn within(&self, outer: &Leadership) -> Leadership {
        Self {
            inner: self.inner.clone(),
            outer: Some(outer.inner.clone()),
        }
    }

    /// Resolves when the work must stop (lost, deadline passed, or shutdown).
    pub fn cancelled(&self) -> WaitForCancellationFuture<'_> {
        self.inner.stop.cancelled()
    }

    /// An owned future that resolves with [`cancelled`](Self::cancelled), e.g. for
    /// kube-runtime's `Controller::graceful_shutdown_on`.
    pub fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + Sync + 'static {
        self.inner.stop.clone().cancelled_owned()
    }

    /// Whether the work has been told to stop.
    pub fn is_cancelled(&self) -> bool {
        self.inner.stop.is_cancelled()
    }

    /// A token that fires with [`cancelled`](Self::cancelled), for APIs that take one.
    pub fn token(&self) -> CancellationToken {
        self.inner.stop.child_token()
    }

    /// The renew deadline of this term (not of an outer one).
    pub(crate) fn deadline(&self) -> Instant {
        self.inner.deadline()
    }

    /// A successful renew moves the deadline.
    pub(crate) fn extend_to(&self, deadline: Instant) {
        let nanos = deadline
            .saturating_duration_since(self.inner.epoch)
            .as_nanos();
        self.inner
            .deadline_nanos
            .store(u64::try_from(nanos).unwrap_or(u64::MAX), Ordering::Release);
    }

    /// Tells the work to stop while the Lease is still held (graceful shutdown: the elector
    /// keeps renewing until the work has finished, then releases).
    pub(crate) fn request_stop(&self) {
        self.inner.stop.cancel();
    }

    /// The term is over: writes must stop now.
    pub(crate) fn end(&self) {
        self.inner.ended.store(true, Ordering::Release);
        self.inner.stop.cancel();
    }
}

impl Term {
    fn deadline(&self) -> Instant {
        self.epoch + Duration::from_nanos(self.deadline_nanos.load(Ordering::Acquire))
    }

    /// Not ended, and renewed within the renew deadline.
    fn holds(&self) -> bool {
        !self.ended.load(Ordering::Acquire) && Instant::now() < self.deadline()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn still_leading_turns_false_at_the_deadline_without_any_task_running() {
        let leadership = Leadership::new("l", "me", Instant::now() + Duration::from_secs(10));
        assert!(leadership.still_leading());
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(leadership.still_leading());
        leadership.extend_to(Instant::now() + Duration::from_secs(10));
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(leadership.still_leading(), "a renew moved the deadline");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(!leadership.still_leading());
    }

    #[tokio::test(start_paused = true)]
    async fn stop_request_keeps_the_claim_but_end_drops_it() {
        let leadership = Leadership::new("l", "me", Instant::now() + Duration::from_secs(10));
        let token = leadership.token();
        leadership.request_stop();
        assert!(token.is_cancelled());
        assert!(
            leadership.still_leading(),
            "draining work may still finish its writes"
        );
        leadership.end();
        assert!(!leadership.still_leading());
    }

    #[tokio::test(start_paused = true)]
    async fn a_nested_term_leads_only_while_its_outer_term_does() {
        let outer = Leadership::new("layout", "me", Instant::now() + Duration::from_secs(5));
        let shard = Leadership::new("shard", "me", Instant::now() + Duration::from_secs(10));
        let nested = shard.within(&outer);
        assert!(nested.still_leading());
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(shard.still_leading());
        assert!(!nested.still_leading(), "the outer term ran out");
        outer.extend_to(Instant::now() + Duration::from_secs(5));
        assert!(nested.still_leading());
        outer.end();
        assert!(!nested.still_leading(), "the outer term ended");
        assert!(
            !nested.is_cancelled(),
            "whoever nests the terms ends the inner one"
        );
        shard.end();
        assert!(nested.is_cancelled());
    }
}
