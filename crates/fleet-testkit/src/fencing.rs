//! The fencing drill: a leader frozen past its lease must not write once another replica took
//! over, not even the work that queued up for it while it was frozen.
//!
//! The frozen replica's writes are counted by its write gate (`fleet_api_writes_total`, every
//! request counted as it is let through, so one in flight at the freeze counts before it).

use std::future::Future;
use std::time::Duration;

use crate::process::{ManagedProcess, SIGCONT, SIGSTOP};
use crate::{Error, eventually, metric_sum, wait_role};

/// What the frozen replica did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fencing {
    /// Its `fleet_api_writes_total` under the Lease right before the freeze, and once it is a standby again
    /// and has had `grace` to work off what queued up.
    pub writes_before: f64,
    pub writes_after: f64,
    /// Its `fleet_api_writes_refused_total` at the end: writes it tried and its gate refused.
    pub refused: f64,
}

/// Freezes `leader` (SIGSTOP; its admin port `leader_port`), the holder of `lease`, once its
/// writes under that Lease are quiet, runs
/// `pending` (which makes work for the leader), waits until the replica on `standby_port`
/// leads and `taken_over` resolves (the work done by it), resumes the frozen one, waits until
/// it reports standby, gives it `grace`, and reports its writes under `lease` (a replica with
/// a second role may take that one back and write under it meanwhile).
pub async fn drill<P, T>(
    leader: &ManagedProcess,
    lease: &str,
    leader_port: u16,
    standby_port: u16,
    pending: P,
    taken_over: T,
    grace: Duration,
) -> Result<Fencing, Error>
where
    P: Future<Output = ()>,
    T: Future<Output = ()>,
{
    let timeout = Duration::from_secs(90);
    let claim = format!("claim=\"{lease}\"");
    let writes = || metric_sum(leader_port, "fleet_api_writes_total", &claim);
    let quiet = || async {
        let first = writes().await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let second = writes().await;
        match (first, second) {
            (Some(a), Some(b)) if a == b => Ok(()),
            other => Err(format!("still writing: {other:?}")),
        }
    };
    eventually("the leader's writes quiet", timeout, Duration::ZERO, quiet).await?;
    let writes_before = writes().await.unwrap_or_default();
    leader.signal(SIGSTOP)?;
    pending.await;
    wait_role(standby_port, "leader", timeout).await?;
    taken_over.await;
    leader.signal(SIGCONT)?;
    wait_role(leader_port, "standby", timeout).await?;
    tokio::time::sleep(grace).await;
    Ok(Fencing {
        writes_before,
        writes_after: writes().await.unwrap_or_default(),
        refused: metric_sum(leader_port, "fleet_api_writes_refused_total", &claim)
            .await
            .unwrap_or_default(),
    })
}
