//! What killing one replica paused (`--kill-one`): the BundleDeployments of the Bundles in
//! its shards, and nothing else. Each BundleDeployment carries its Bundle's shard
//! ([`fleet_api::sharding::BUNDLE_SHARD`]), so the fan-out's own watch tells the killed
//! replica's work from the survivors'.
//!
//! Whether a BundleDeployment was created during the outage is read from its
//! `creationTimestamp`, which the API server sets (in whole seconds): the watch's events can
//! arrive seconds late on a loaded machine. A BundleDeployment counts as created during the
//! outage only when the whole second of its timestamp lies inside it (the API server runs on
//! this machine: one clock).

use std::time::{Duration, Instant};

use fleet_api::sharding::{BUNDLE_SHARD, ShardLabel};
use jiff::{SignedDuration, Timestamp};

use super::counting::Seen;

/// When one replica was killed, and when its shards were owned again.
#[derive(Debug, Clone)]
pub struct Kill {
    /// The shards the killed replica held.
    pub shards: Vec<u32>,
    /// Without shards: whether the killed replica was the leader (else a standby).
    pub led: bool,
    /// The dynamic shards in all.
    pub of: u32,
    pub at: Instant,
    pub at_wall: Timestamp,
    pub owned_again: Instant,
    pub owned_again_wall: Timestamp,
}

/// One side of the outage: the killed replica's shards, or the others.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Side {
    /// BundleDeployments the API server created while the killed replica's shards had no
    /// owner (the whole second of their `creationTimestamp` inside the outage).
    pub created_meanwhile: usize,
    /// Since the fan-out started, until the watch saw the last of this side's
    /// BundleDeployments.
    pub done: Option<Duration>,
}

/// What the outage paused, and what went on.
#[derive(Debug, Clone)]
pub struct Outage {
    pub kill: Kill,
    /// Since the fan-out started, until the kill.
    pub killed_after: Duration,
    pub killed: Side,
    pub others: Side,
}

impl Outage {
    /// Splits what `seen` recorded by the side each BundleDeployment's Bundle belongs to.
    pub fn of(seen: &Seen, kill: Kill, started: Instant) -> Self {
        let label = ShardLabel {
            key: BUNDLE_SHARD,
            shards: kill.of,
        };
        let killed_values: Vec<String> = kill.shards.iter().map(|s| label.value(*s)).collect();
        let mut killed = Side::default();
        let mut others = Side::default();
        for appeared in seen.values() {
            let of_killed = appeared
                .bundle_shard
                .as_ref()
                .is_some_and(|value| killed_values.contains(value));
            let side = if of_killed { &mut killed } else { &mut others };
            if appeared.created.is_some_and(|created| {
                created >= kill.at_wall
                    && created + SignedDuration::from_secs(1) <= kill.owned_again_wall
            }) {
                side.created_meanwhile += 1;
            }
            let since_start = appeared.at.saturating_duration_since(started);
            side.done = side.done.max(Some(since_start));
        }
        Self {
            killed_after: kill.at.saturating_duration_since(started),
            kill,
            killed,
            others,
        }
    }

    /// The report's lines.
    pub fn lines(&self) -> Vec<String> {
        let lasted = self
            .kill
            .owned_again
            .saturating_duration_since(self.kill.at)
            .as_secs_f64();
        let done = |side: &Side| {
            side.done
                .map_or_else(|| "none".to_owned(), |d| format!("{:.2}s", d.as_secs_f64()))
        };
        vec![
            format!(
                "one replica SIGKILLed {:.2}s into the fan-out; it held shards {:?} of {}, owned again after {lasted:.2}s",
                self.killed_after.as_secs_f64(),
                self.kill.shards,
                self.kill.of
            ),
            format!(
                "BundleDeployments of its shards' Bundles created in those {lasted:.2}s (by creationTimestamp): {} (must be 0); the last seen at {}",
                self.killed.created_meanwhile,
                done(&self.killed)
            ),
            format!(
                "BundleDeployments of the other shards' Bundles created in those {lasted:.2}s: {}; the last seen at {}",
                self.others.created_meanwhile,
                done(&self.others)
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::super::counting::Appeared;
    use super::*;

    #[test]
    fn splits_by_the_killed_replicas_shards_and_the_outage() {
        let started = Instant::now();
        let wall = Timestamp::from_second(1_000_000).unwrap_or_default();
        let at = |ms: u64| started + Duration::from_millis(ms);
        let wall_at = |ms: i64| wall + SignedDuration::from_millis(ms);
        // The kill at 1.5 s, the shards owned again at 4.5 s: seconds 2 and 3 lie inside.
        let kill = Kill {
            shards: vec![1, 4],
            led: false,
            of: 6,
            at: at(1500),
            at_wall: wall_at(1500),
            owned_again: at(4500),
            owned_again_wall: wall_at(4500),
        };
        // (name, created in second, seen by the watch at ms, shard label)
        let rows = [
            ("killed-before", 1, 3000, Some("1-of-6")),
            ("killed-after", 4, 5000, Some("4-of-6")),
            ("others-inside", 2, 2500, Some("2-of-6")),
            ("unlabelled-inside", 3, 3600, None),
            ("other-count-inside", 3, 3700, Some("1-of-3")),
            ("others-at-the-kill", 1, 1600, Some("3-of-6")),
        ];
        let seen: Seen = rows
            .iter()
            .map(|(name, second, seen_ms, shard)| {
                let appeared = Appeared {
                    at: at(*seen_ms),
                    created: Some(wall_at(second * 1000)),
                    bundle_shard: shard.map(str::to_owned),
                };
                (("ns".to_owned(), (*name).to_owned()), appeared)
            })
            .collect();
        let outage = Outage::of(&seen, kill, started);
        assert_eq!(
            outage.killed,
            Side {
                created_meanwhile: 0,
                done: Some(Duration::from_millis(5000)),
            },
            "seen late is not created late"
        );
        assert_eq!(
            outage.others,
            Side {
                created_meanwhile: 3,
                done: Some(Duration::from_millis(3700)),
            }
        );
        assert_eq!(outage.killed_after, Duration::from_millis(1500));
        assert_eq!(outage.lines().len(), 3);
    }
}
