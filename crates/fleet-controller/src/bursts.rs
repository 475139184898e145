//! Roll-ups yield to fan-outs. While BundleDeployments are being created (a Bundle fanning
//! out to many Clusters), every creation changes its Cluster's summary, and writing each
//! Cluster's status as it changes would spend the API server on roll-ups while agents wait
//! for their BundleDeployments. So a Cluster roll-up that would write waits while creations
//! go on: until they pause for [`QUIET`], for at most [`MAX_DEFERRAL`] per Cluster (its
//! status never lags a long fan-out by more). A 10 x 1000 fan-out then writes each Cluster's
//! status once, right after it, instead of about twice during it.
//!
//! Creations are seen in the roll-ups' own cache: under dynamic shards a replica sees those
//! of its Clusters' shards, whichever replica writes them. The decision is [`decide`], pure.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::summary::Placed;

/// Creations this far apart are one burst; this long after the last one, roll-ups write.
pub const QUIET: Duration = Duration::from_secs(1);

/// A roll-up waits at most this long for a burst to end.
pub const MAX_DEFERRAL: Duration = Duration::from_secs(30);

/// The bursts of BundleDeployment creations a term has seen, and the roll-ups waiting.
#[derive(Debug, Default)]
pub struct Bursts {
    /// When a BundleDeployment not yet reported on was last seen.
    last_creation: Mutex<Option<Instant>>,
    /// Roll-ups waiting for the burst to end, by key, since when.
    deferred: Mutex<HashMap<String, Instant>>,
}

impl Bursts {
    /// A BundleDeployment changed: one just created (its first generation, which its agent
    /// has not reported on yet) belongs to a burst.
    pub fn observe(&self, bd: &impl Placed, now: Instant) {
        if bd.meta().generation == Some(1) && !bd.reported() {
            *self
                .last_creation
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(now);
        }
    }

    /// Whether the roll-up of `key` waits for the burst to end, and how long before it
    /// looks again.
    pub fn defer(&self, key: &str, now: Instant) -> Option<Duration> {
        let last = *self
            .last_creation
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut deferred = self.deferred.lock().unwrap_or_else(PoisonError::into_inner);
        let wait = decide(now, last, deferred.get(key).copied(), QUIET, MAX_DEFERRAL);
        match wait {
            Some(_) => {
                deferred.entry(key.to_owned()).or_insert(now);
            }
            None => {
                deferred.remove(key);
            }
        }
        wait
    }
}

/// Whether a roll-up waits at `now`: while the last creation is less than `quiet` ago, and
/// for at most `max` since it first waited (`deferred_since`). Returns how long until it
/// may write.
pub fn decide(
    now: Instant,
    last_creation: Option<Instant>,
    deferred_since: Option<Instant>,
    quiet: Duration,
    max: Duration,
) -> Option<Duration> {
    let calm_in = quiet.checked_sub(now.saturating_duration_since(last_creation?))?;
    let since = deferred_since.unwrap_or(now);
    let give_up_in = max.checked_sub(now.saturating_duration_since(since))?;
    let wait = calm_in.min(give_up_in);
    (!wait.is_zero()).then_some(wait)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placements::Placement;

    #[test]
    fn roll_ups_wait_for_a_burst_to_end_but_not_forever() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        let (quiet, max) = (s(1), s(30));
        #[allow(clippy::type_complexity)]
        let cases: [(
            &str,
            Duration,
            Option<Duration>,
            Option<Duration>,
            Option<Duration>,
        ); 7] = [
            ("no creation seen", s(100), None, None, None),
            (
                "long after the last creation",
                s(100),
                Some(s(50)),
                None,
                None,
            ),
            (
                "just after a creation",
                s(100),
                Some(ms(99_800)),
                None,
                Some(ms(800)),
            ),
            ("exactly quiet after it", s(100), Some(s(99)), None, None),
            (
                "deferred for a while already",
                s(100),
                Some(ms(99_900)),
                Some(s(80)),
                Some(ms(900)),
            ),
            (
                "the deferral ends before the burst",
                s(100),
                Some(ms(99_900)),
                Some(ms(70_500)),
                Some(ms(500)),
            ),
            (
                "deferred the longest: writes in the burst",
                s(100),
                Some(ms(99_900)),
                Some(s(70)),
                None,
            ),
        ];
        for (case, now, last, since, expected) in cases {
            let at = |d: Duration| t0 + d;
            let wait = decide(at(now), last.map(at), since.map(at), quiet, max);
            assert_eq!(wait, expected, "{case}");
        }
    }

    #[test]
    fn a_deferral_is_remembered_until_the_roll_up_writes() {
        let bursts = Bursts::default();
        let t0 = Instant::now();
        let mut created = Placement::default();
        created.metadata.generation = Some(1);
        let mut updated = created.clone();
        updated.metadata.generation = Some(2);
        bursts.observe(&updated, t0);
        assert_eq!(bursts.defer("ns/c", t0), None, "no burst");
        bursts.observe(&created, t0);
        let first = bursts.defer("ns/c", t0);
        assert_eq!(first, Some(QUIET));
        // Creations go on: the roll-up keeps waiting, until the deferral is at its longest.
        let late = t0 + MAX_DEFERRAL;
        bursts.observe(&created, late);
        assert_eq!(bursts.defer("ns/c", late), None, "waited the longest");
        assert_eq!(
            bursts.defer("ns/c", late),
            Some(QUIET),
            "a new deferral after a write"
        );
        let mut reported = crate::deployed::Deployed::default();
        reported.metadata = created.metadata.clone();
        reported.status = Some(Box::default());
        let reported = Placement::from(&reported);
        bursts.observe(&reported, late + QUIET);
        assert_eq!(
            bursts.defer("ns/c", late + QUIET),
            None,
            "status updates are no burst"
        );
    }
}
