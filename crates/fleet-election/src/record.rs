//! The leader-election record in a Lease, and the pure decision of what to do next.
//!
//! Records are written exactly as client-go's `LeaseLock` writes them
//! (`LeaderElectionRecordToLeaseSpec`): `holderIdentity`, `leaseDurationSeconds`,
//! `acquireTime`, `renewTime` and `leaseTransitions` are always set; a released Lease has an
//! empty holder and a duration of 1 s. So a client-go elector and this one, on the same Lease,
//! read each other's records and respect each other.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::LeaseSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use tokio::time::Instant;

/// The Lease as this replica last saw it, and when it saw the record change.
///
/// Expiry is judged from `changed_at`, this replica's monotonic clock, never from the
/// timestamps inside the record: that makes it robust to clock skew between replicas (the
/// client-go model; only clock *rate* differences matter).
#[derive(Debug, Clone)]
pub struct Observed {
    pub spec: LeaseSpec,
    pub changed_at: Instant,
}

impl Observed {
    pub fn holder(&self) -> &str {
        self.spec.holder_identity.as_deref().unwrap_or_default()
    }

    /// When the current holder's claim runs out, as seen from here.
    pub fn expires_at(&self) -> Instant {
        let seconds = self.spec.lease_duration_seconds.unwrap_or(0).max(1);
        self.changed_at + Duration::from_secs(seconds.unsigned_abs().into())
    }

    /// Whether nobody holds the Lease: released (empty holder) or never held.
    pub fn is_released(&self) -> bool {
        self.holder().is_empty()
    }

    /// Updates the observation with a fresh read of the Lease. The change time moves only if
    /// the record itself changed (a label edit is not a renew).
    pub fn update(previous: Option<&Observed>, spec: LeaseSpec, now: Instant) -> Observed {
        match previous {
            Some(old) if old.spec == spec => old.clone(),
            _ => Observed {
                spec,
                changed_at: now,
            },
        }
    }
}

/// What the elector should do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// No Lease exists: create it, holding it.
    Create,
    /// The Lease is ours: write a renewed record.
    Renew,
    /// The Lease is released or expired: write a record naming us.
    Acquire,
    /// Someone else holds a valid Lease: nothing to do before `until` (or a watch event).
    WaitUntil(Instant),
}

/// The whole decision, as a pure function of what was observed, who we are and the time.
pub fn decide(observed: Option<&Observed>, identity: &str, now: Instant) -> Step {
    let Some(observed) = observed else {
        return Step::Create;
    };
    if observed.holder() == identity {
        // Ours, also after a lost term whose last renew went through: re-acquiring our own
        // record is safe because the write carries the resourceVersion we saw.
        Step::Renew
    } else if observed.is_released() || now >= observed.expires_at() {
        Step::Acquire
    } else {
        Step::WaitUntil(observed.expires_at())
    }
}

/// The record to write for `step` (`Create`, `Renew` or `Acquire`), given the current one.
pub fn next_spec(
    step: &Step,
    current: Option<&LeaseSpec>,
    identity: &str,
    lease_duration_seconds: i32,
    now: jiff::Timestamp,
) -> LeaseSpec {
    let transitions = current.and_then(|s| s.lease_transitions).unwrap_or(0);
    let (acquire_time, lease_transitions) = match step {
        Step::Renew => (
            current
                .and_then(|s| s.acquire_time.clone())
                .unwrap_or(MicroTime(now)),
            transitions,
        ),
        Step::Acquire => (MicroTime(now), transitions.saturating_add(1)),
        Step::Create | Step::WaitUntil(_) => (MicroTime(now), 0),
    };
    LeaseSpec {
        holder_identity: Some(identity.to_owned()),
        lease_duration_seconds: Some(lease_duration_seconds),
        acquire_time: Some(acquire_time),
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(lease_transitions),
        // Coordinated leader election (KEP-4355) fields are kept as found.
        strategy: current.and_then(|s| s.strategy.clone()),
        preferred_holder: current.and_then(|s| s.preferred_holder.clone()),
    }
}

/// client-go's released record (`tryRelease`): empty holder, a 1 s duration, times set to now,
/// transitions unchanged.
pub fn released_spec(current: Option<&LeaseSpec>, now: jiff::Timestamp) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(String::new()),
        lease_duration_seconds: Some(1),
        acquire_time: Some(MicroTime(now)),
        renew_time: Some(MicroTime(now)),
        lease_transitions: current.and_then(|s| s.lease_transitions),
        strategy: current.and_then(|s| s.strategy.clone()),
        preferred_holder: current.and_then(|s| s.preferred_holder.clone()),
    }
}

/// The annotation naming the replica that asks for the Lease.
pub const HANDOVER_ANNOTATION: &str = "election.fleet-rs.io/handover-to";

/// Who asks for `lease`, if anyone.
pub fn handover_requested_by(lease: &k8s_openapi::api::coordination::v1::Lease) -> Option<&str> {
    lease
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(HANDOVER_ANNOTATION))
        .map(String::as_str)
        .filter(|who| !who.is_empty())
}

pub(crate) fn request_handover(
    lease: &mut k8s_openapi::api::coordination::v1::Lease,
    identity: &str,
) {
    lease
        .metadata
        .annotations
        .get_or_insert_default()
        .insert(HANDOVER_ANNOTATION.to_owned(), identity.to_owned());
}

pub(crate) fn clear_handover(lease: &mut k8s_openapi::api::coordination::v1::Lease) {
    if let Some(annotations) = &mut lease.metadata.annotations {
        annotations.remove(HANDOVER_ANNOTATION);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held_by(holder: &str, seconds: i32, at: Instant) -> Observed {
        Observed {
            spec: LeaseSpec {
                holder_identity: Some(holder.to_owned()),
                lease_duration_seconds: Some(seconds),
                lease_transitions: Some(4),
                ..Default::default()
            },
            changed_at: at,
        }
    }

    #[test]
    fn decisions() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let cases: Vec<(&str, Option<Observed>, Instant, Step)> = vec![
            ("no lease yet", None, t0, Step::Create),
            (
                "ours",
                Some(held_by("me", 15, t0)),
                t0 + s(100),
                Step::Renew,
            ),
            ("released", Some(held_by("", 1, t0)), t0, Step::Acquire),
            (
                "held by a live other",
                Some(held_by("other", 15, t0)),
                t0 + s(14),
                Step::WaitUntil(t0 + s(15)),
            ),
            (
                "expired",
                Some(held_by("other", 15, t0)),
                t0 + s(15),
                Step::Acquire,
            ),
            (
                "unknown client-go holder, valid",
                Some(held_by("node-1_3f2a-uuid", 30, t0)),
                t0 + s(29),
                Step::WaitUntil(t0 + s(30)),
            ),
            (
                "a zero duration counts as one second",
                Some(held_by("other", 0, t0)),
                t0,
                Step::WaitUntil(t0 + s(1)),
            ),
        ];
        for (name, observed, now, expected) in cases {
            assert_eq!(decide(observed.as_ref(), "me", now), expected, "{name}");
        }
    }

    #[test]
    fn expiry_counts_from_local_observation_not_record_timestamps() {
        // A renewTime far in the past (a skewed clock on the holder) does not make the lease
        // look expired: only when this replica saw the change matters.
        let t0 = Instant::now();
        let mut observed = held_by("other", 15, t0);
        observed.spec.renew_time = Some(MicroTime(jiff::Timestamp::UNIX_EPOCH));
        assert_eq!(
            decide(Some(&observed), "me", t0 + Duration::from_secs(1)),
            Step::WaitUntil(t0 + Duration::from_secs(15))
        );
    }

    #[test]
    fn change_time_moves_only_when_the_record_changes() {
        let t0 = Instant::now();
        let first = held_by("other", 15, t0);
        let later = t0 + Duration::from_secs(5);
        let same = Observed::update(Some(&first), first.spec.clone(), later);
        assert_eq!(same.changed_at, t0);
        let mut renewed = first.spec.clone();
        renewed.renew_time = Some(MicroTime(jiff::Timestamp::now()));
        assert_eq!(
            Observed::update(Some(&first), renewed, later).changed_at,
            later
        );
    }

    #[test]
    fn records_match_client_go() {
        let now = jiff::Timestamp::now();
        let current = held_by("other", 15, Instant::now()).spec;

        let acquired = next_spec(&Step::Acquire, Some(&current), "me", 15, now);
        assert_eq!(acquired.holder_identity.as_deref(), Some("me"));
        assert_eq!(
            acquired.lease_transitions,
            Some(5),
            "a new holder is a transition"
        );
        assert_eq!(acquired.acquire_time, Some(MicroTime(now)));
        assert_eq!(acquired.renew_time, Some(MicroTime(now)));
        assert_eq!(acquired.lease_duration_seconds, Some(15));

        let later = now + jiff::SignedDuration::from_secs(2);
        let renewed = next_spec(&Step::Renew, Some(&acquired), "me", 15, later);
        assert_eq!(
            renewed.lease_transitions,
            Some(5),
            "a renew is not a transition"
        );
        assert_eq!(
            renewed.acquire_time,
            Some(MicroTime(now)),
            "acquireTime kept"
        );
        assert_eq!(renewed.renew_time, Some(MicroTime(later)));

        let created = next_spec(&Step::Create, None, "me", 15, now);
        assert_eq!(created.lease_transitions, Some(0));

        let released = released_spec(Some(&renewed), later);
        assert_eq!(released.holder_identity.as_deref(), Some(""));
        assert_eq!(released.lease_duration_seconds, Some(1));
        assert_eq!(released.lease_transitions, Some(5));
    }

    #[test]
    fn the_annotation_is_read_written_and_cleared() {
        let mut lease = k8s_openapi::api::coordination::v1::Lease::default();
        assert_eq!(handover_requested_by(&lease), None);
        request_handover(&mut lease, "b");
        assert_eq!(handover_requested_by(&lease), Some("b"));
        clear_handover(&mut lease);
        assert_eq!(handover_requested_by(&lease), None);
    }
}
