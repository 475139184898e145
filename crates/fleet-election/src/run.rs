//! Running work only while leading.

use std::future::Future;

use tokio_util::sync::CancellationToken;

use crate::elector::ElectorHandle;
use crate::leadership::Leadership;

/// Runs `work` during every term this replica leads, until `shutdown` fires; then stops the
/// work and releases the Lease so a standby takes over at once.
///
/// - On acquire, `work(leadership)` starts. It should stop when `leadership.cancelled()`
///   fires, and check `leadership.still_leading()` right before writes.
/// - On loss, the work gets up to the elector's stop grace to return, then is dropped
///   (aborting what it awaits); the replica goes back to standby in the same process.
/// - On shutdown, the work is told to stop while the Lease is still renewed; once it has
///   returned (or the grace ran out and it was dropped) the Lease is released. This is the
///   order client-go's `ReleaseOnCancel` documentation asks for, enforced here.
/// - If the work returns on its own while still leading, it is started again after the retry
///   period.
pub async fn run_while_leading<W, Fut>(
    mut elector: ElectorHandle,
    shutdown: CancellationToken,
    mut work: W,
) where
    W: FnMut(Leadership) -> Fut,
    Fut: Future<Output = ()>,
{
    let grace = elector.stop_grace();
    loop {
        let leadership = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            leadership = elector.leading() => match leadership {
                Some(leadership) => leadership,
                None => break,
            },
        };
        let mut task = std::pin::pin!(work(leadership.clone()));
        let mut finished = false;
        let mut shutting_down = false;
        tokio::select! {
            biased;
            () = &mut task => finished = true,
            () = leadership.cancelled() => {}
            () = shutdown.cancelled() => {
                shutting_down = true;
                elector.request_stop().await;
            }
        }
        if !finished && tokio::time::timeout(grace, &mut task).await.is_err() {
            tracing::warn!(lease = %leadership.lease(), ?grace, "work did not stop within the grace period; aborting it");
        }
        if shutting_down || shutdown.is_cancelled() {
            break;
        }
        if finished && leadership.still_leading() {
            tracing::warn!(lease = %leadership.lease(), "work returned while still leading; restarting it");
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(elector.retry_period()) => {}
            }
        }
    }
    elector.release().await;
}
