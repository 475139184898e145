//! How many BundleDeployments the Bundle reconciles of a term hold planned and not yet
//! written, all together.
//!
//! A Bundle reconcile plans every target before it writes any (the rollout needs each
//! target's deployment id), each kept as its JSON until written (`bundles::planned`): one
//! or more KiB each. With 8 workers on Bundles that target 1000
//! Clusters, that was 8,000 planned BundleDeployments at once, while the writes, 32 at a
//! time for all Bundles, could use only a few of them. So a reconcile first reserves room for
//! as many as its Bundle may target ([`PlanBudget::reserve`]), waiting for it; once planned,
//! keeps room for those it will write ([`Reserved::keep`]); and gives each unit back as its
//! write ends ([`Reserved::unit`]), so the next Bundle plans while this one's last writes go
//! out. Memory is bounded by the budget, not by workers × clusters. A Bundle that may target
//! more clusters than the whole budget waits for all of it and plans alone.
//!
//! The wait is first come, first served: a Bundle queued behind large ones plans once those
//! ahead of it have planned and enough of their writes have ended. So during a large
//! fan-out a small Bundle's change waits for part of it, where without the budget its writes
//! would have competed with the fan-out's for the write slots.
//!
//! Under dynamic shards the budget is that of all the replicas together: each uses the share
//! of it of the shards it holds ([`PlanBudget::follow_shards`]), so that a replica holding a
//! third of the Bundles plans within a third of the memory. The units beyond its share are
//! withheld (acquired and kept) by a task that follows the shards held.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio_util::sync::CancellationToken;

/// The budget of one term.
#[derive(Debug)]
pub struct PlanBudget(Shared);

/// What a budget, its reservations and their units share.
#[derive(Debug, Clone)]
struct Shared {
    units: Arc<Semaphore>,
    total: usize,
    /// The part of `total` this replica uses (all of it without dynamic shards).
    share: Arc<AtomicUsize>,
    /// The units held back beyond the share.
    withheld: Arc<AtomicUsize>,
    /// `fleet_controller_planned_deployments`: the units in use.
    in_use: Gauge,
}

impl Shared {
    fn observe(&self) {
        let used = self
            .total
            .saturating_sub(self.units.available_permits())
            .saturating_sub(self.withheld.load(Ordering::Relaxed));
        self.in_use.set(i64::try_from(used).unwrap_or(i64::MAX));
    }
}

/// The share of a budget of `total` that `held` of `shards` shards use: in proportion,
/// rounded up, at least one unit.
pub fn share_of(total: usize, held: usize, shards: u32) -> usize {
    let shards = usize::try_from(shards).unwrap_or(usize::MAX).max(1);
    (total.saturating_mul(held.min(shards)).div_ceil(shards)).clamp(1, total.max(1))
}

impl PlanBudget {
    /// A budget of `total` BundleDeployments (at least one).
    pub fn new(total: usize, in_use: Gauge) -> Self {
        let total = total.clamp(1, Semaphore::MAX_PERMITS);
        Self(Shared {
            units: Arc::new(Semaphore::new(total)),
            total,
            share: Arc::new(AtomicUsize::new(total)),
            withheld: Arc::new(AtomicUsize::new(0)),
            in_use,
        })
    }

    /// Keeps this replica's part of the budget at the share of the shards it holds (`held`,
    /// of `shards`) until `stop`: withholds the units beyond it, as they are free, and gives
    /// them back when it holds more shards, and when stopped.
    pub fn follow_shards(
        &self,
        mut held: watch::Receiver<BTreeSet<u32>>,
        shards: u32,
        stop: CancellationToken,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let budget = self.0.clone();
        async move {
            let mut withheld: Option<OwnedSemaphorePermit> = None;
            loop {
                let share = share_of(budget.total, held.borrow_and_update().len(), shards);
                budget.share.store(share, Ordering::Relaxed);
                let wanted = budget.total - share;
                let have = withheld
                    .as_ref()
                    .map_or(0, OwnedSemaphorePermit::num_permits);
                if have > wanted {
                    drop(withheld.as_mut().and_then(|p| p.split(have - wanted)));
                }
                budget.withheld.store(have.min(wanted), Ordering::Relaxed);
                budget.observe();
                let more = u32::try_from(wanted.saturating_sub(have)).unwrap_or(u32::MAX);
                tokio::select! {
                    () = stop.cancelled() => break,
                    changed = held.changed() => if changed.is_err() { break },
                    Ok(permit) = budget.units.clone().acquire_many_owned(more), if more > 0 => {
                        match withheld.as_mut() {
                            Some(withheld) => withheld.merge(permit),
                            None => withheld = Some(permit),
                        }
                    }
                }
            }
            budget.share.store(budget.total, Ordering::Relaxed);
            budget.withheld.store(0, Ordering::Relaxed);
            drop(withheld);
            budget.observe();
        }
    }

    /// Room for `wanted` BundleDeployments (at most this replica's share of the budget),
    /// once it is free.
    pub async fn reserve(&self, wanted: usize) -> Reserved {
        let budget = &self.0;
        let share = budget.share.load(Ordering::Relaxed);
        let wanted = u32::try_from(wanted.min(share)).unwrap_or(u32::MAX);
        // The semaphore is never closed: without a permit, the reconcile reserved nothing.
        let permit = match wanted {
            0 => None,
            n => budget.units.clone().acquire_many_owned(n).await.ok(),
        };
        budget.observe();
        Reserved {
            budget: budget.clone(),
            permit,
        }
    }
}

/// Room reserved by one reconcile; given back when dropped.
#[derive(Debug)]
pub struct Reserved {
    budget: Shared,
    permit: Option<OwnedSemaphorePermit>,
}

impl Reserved {
    /// How many BundleDeployments this reservation has room for.
    pub fn room(&self) -> usize {
        self.permit
            .as_ref()
            .map_or(0, OwnedSemaphorePermit::num_permits)
    }

    /// Keeps room for `writes` BundleDeployments and gives the rest back.
    pub fn keep(&mut self, writes: usize) {
        let extra = self.room().saturating_sub(writes);
        if let Some(permit) = self.permit.as_mut() {
            drop(permit.split(extra));
        }
        self.budget.observe();
    }

    /// The room of one write, given back when dropped (as the write ends); `None` once the
    /// reservation is used up (a Bundle larger than the budget).
    pub fn unit(&mut self) -> Option<Unit> {
        let permit = self.permit.as_mut()?.split(1)?;
        Some(Unit {
            budget: self.budget.clone(),
            permit: Some(permit),
        })
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        drop(self.permit.take());
        self.budget.observe();
    }
}

/// The room of one BundleDeployment being written.
#[derive(Debug)]
pub struct Unit {
    budget: Shared,
    permit: Option<OwnedSemaphorePermit>,
}

impl Drop for Unit {
    fn drop(&mut self) {
        drop(self.permit.take());
        self.budget.observe();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn budget(total: usize) -> PlanBudget {
        PlanBudget::new(total, Gauge::default())
    }

    /// Whether `future` is still waiting after the runtime had every chance to finish it.
    async fn waits<F: std::future::Future>(future: F) -> bool {
        tokio::time::timeout(Duration::from_secs(1), future)
            .await
            .is_err()
    }

    #[tokio::test(start_paused = true)]
    async fn a_reconcile_keeps_room_for_its_writes_only() {
        let budget = budget(100);
        let mut first = budget.reserve(80).await;
        assert_eq!(first.room(), 80);
        assert_eq!(budget.0.in_use.get(), 80);
        assert!(waits(budget.reserve(30)).await, "80 + 30 > 100");
        first.keep(50);
        assert_eq!(budget.0.in_use.get(), 50);
        let second = budget.reserve(30).await;
        assert_eq!(second.room(), 30);
        assert_eq!(budget.0.in_use.get(), 80);
        drop((first, second));
        assert_eq!(budget.0.in_use.get(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn each_write_gives_its_unit_back_as_it_ends() {
        let budget = budget(3);
        let mut first = budget.reserve(3).await;
        let (a, b) = (first.unit(), first.unit());
        assert_eq!(first.room(), 1);
        assert!(waits(budget.reserve(2)).await);
        drop(a);
        assert_eq!(budget.0.in_use.get(), 2);
        let second = budget.reserve(2);
        drop(b);
        assert_eq!(second.await.room(), 2, "room as the first one's writes end");
    }

    #[tokio::test(start_paused = true)]
    async fn a_bundle_larger_than_the_budget_plans_alone() {
        let budget = budget(10);
        let mut large = budget.reserve(1000).await;
        assert_eq!(large.room(), 10);
        assert!(waits(budget.reserve(1)).await);
        let units: Vec<Option<Unit>> = (0..12).map(|_| large.unit()).collect();
        assert_eq!(units.iter().filter(|u| u.is_some()).count(), 10);
        assert_eq!(large.room(), 0);
        drop(units);
        assert_eq!(budget.reserve(10).await.room(), 10);
    }

    #[test]
    fn the_share_of_the_shards_held() {
        for (total, held, shards, share) in [
            (2048, 2, 6, 683),
            (2048, 6, 6, 2048),
            (2048, 0, 6, 1),
            (10, 1, 3, 4),
            (1, 1, 6, 1),
            (100, 7, 6, 100),
            (100, 1, 0, 100),
        ] {
            assert_eq!(share_of(total, held, shards), share, "{held} of {shards}");
        }
    }

    /// Lets the spawned tasks run until they wait.
    async fn settle() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_replica_plans_within_the_share_of_its_shards() {
        let budget = budget(60);
        let (held, receiver) = watch::channel(BTreeSet::from([0]));
        let stop = CancellationToken::new();
        tokio::spawn(budget.follow_shards(receiver, 6, stop.clone()));
        settle().await;
        let first = budget.reserve(100).await;
        assert_eq!(first.room(), 10, "1 shard of 6");
        assert_eq!(budget.0.in_use.get(), 10, "withheld units are not in use");
        assert!(waits(budget.reserve(1)).await);
        held.send_replace(BTreeSet::from([0, 1, 2]));
        settle().await;
        // 3 of 6: 30, 10 of them in use.
        let second = budget.reserve(20).await;
        assert_eq!(second.room(), 20, "the units given back");
        assert!(waits(budget.reserve(1)).await);
        held.send_replace(BTreeSet::from([0]));
        settle().await;
        assert!(waits(budget.reserve(1)).await, "back to 10, all in use");
        drop((first, second));
        settle().await;
        assert_eq!(budget.0.withheld.load(Ordering::Relaxed), 50);
        assert_eq!(budget.reserve(100).await.room(), 10);
        stop.cancel();
        settle().await;
        assert_eq!(
            budget.reserve(100).await.room(),
            60,
            "all of it once stopped"
        );
        assert_eq!(budget.0.in_use.get(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_bundle_with_nothing_to_plan_waits_for_nothing() {
        let budget = budget(1);
        let _held = budget.reserve(1).await;
        let mut empty = budget.reserve(0).await;
        assert_eq!(empty.room(), 0);
        assert!(empty.unit().is_none());
    }
}
