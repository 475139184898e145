//! How a term ends: released on shutdown (client-go's released record, so standbys take
//! over at once), handed over on request, or given up when renewing failed; and asking
//! another replica's term to end (a hand-over request).

use tokio::sync::mpsc;
use tokio::time::{Instant, timeout_at};

use super::{Command, ElectionEvent, Machine};
use crate::record::{clear_handover, handover_requested_by, released_spec, request_handover};
use crate::store::{LeaseStore, StoreError};

impl<S: LeaseStore> Machine<S> {
    /// Ends the term and writes client-go's released record, so standbys take over at once
    /// (a shared Lease only ends this member's term: the others may still hold it).
    pub(super) async fn release(&mut self) {
        if self.end_term() && !self.shared {
            self.write_released().await;
        }
    }

    /// Answers a request to hand the Lease over: the term ends (its work stops, and
    /// `still_leading()` is false from now on), the Lease is released, and this replica does
    /// not try to take it back for one lease duration, so the requester acquires it.
    pub(super) fn hand_over(&mut self, requester: &str) {
        tracing::info!(lease = %self.config.lease_name, identity = %self.identity(), %requester, "handing the Lease over on request");
        self.pending_release = self.end_term();
        self.next_attempt = Instant::now() + self.config.timings.lease_duration;
    }

    /// Ends the current term (its work stops, `still_leading()` turns false); whether the
    /// Lease may still be written to release it (the term had not run past its deadline).
    pub(super) fn end_term(&mut self) -> bool {
        let Some(term) = self.term.take() else {
            self.publish_standby();
            return false;
        };
        let deadline = term.deadline();
        term.end();
        self.release_deadline = deadline;
        self.metrics.is_leader.get_or_create(&self.labels).set(0);
        self.publish_standby();
        // Not renewed in time: another replica may already lead; do not touch the Lease.
        Instant::now() < deadline
    }

    /// Writes the released record on the Lease this replica held (a term just ended).
    pub(super) async fn write_released(&mut self) {
        let deadline = self.release_deadline;
        for _ in 0..3 {
            let Some(mut lease) = self.lease.clone() else {
                return;
            };
            if lease
                .spec
                .as_ref()
                .and_then(|s| s.holder_identity.as_deref())
                != Some(self.identity())
            {
                return;
            }
            lease.spec = Some(released_spec(lease.spec.as_ref(), jiff::Timestamp::now()));
            clear_handover(&mut lease);
            match timeout_at(deadline, self.store.replace(&lease)).await {
                Ok(Ok(written)) => {
                    self.lease = Some(written);
                    tracing::info!(lease = %self.config.lease_name, identity = %self.identity(), "released the Lease");
                    self.emit(ElectionEvent::Released);
                    return;
                }
                Ok(Err(StoreError::Conflict(_))) => self.refresh().await,
                Ok(Err(StoreError::Other(error))) => {
                    tracing::warn!(lease = %self.config.lease_name, %error, "releasing the Lease failed; it will expire instead");
                    return;
                }
                Err(_) => {
                    tracing::warn!(lease = %self.config.lease_name, "releasing the Lease timed out; it will expire instead");
                    return;
                }
            }
        }
    }

    /// Asks the current holder to hand the Lease over to this replica, by naming this replica
    /// in the Lease's hand-over annotation (a metadata-only write, with the resourceVersion
    /// last seen: it fails if the Lease changed since). Nothing is asked of a free Lease.
    pub(super) async fn request_handover(&mut self) {
        let Some(mut lease) = self.lease.clone() else {
            return;
        };
        let holder = self.observed.as_ref().map(|o| o.holder().to_owned());
        if self.term.is_some()
            || holder.as_deref().is_none_or(str::is_empty)
            || handover_requested_by(&lease) == Some(self.identity())
        {
            return;
        }
        request_handover(&mut lease, self.identity());
        match self.store.replace(&lease).await {
            Ok(written) => {
                tracing::info!(lease = %self.config.lease_name, identity = %self.identity(), holder = holder.unwrap_or_default(), "asked the holder to hand the Lease over");
                self.lease = Some(written);
            }
            Err(error) => {
                tracing::debug!(lease = %self.config.lease_name, %error, "asking for the Lease failed; asked again later");
            }
        }
    }
}

/// Asks the holder of one elector's Lease to hand it over to this replica.
#[derive(Debug, Clone)]
pub struct Requester(mpsc::Sender<Command>);

impl Requester {
    pub(crate) fn new(commands: mpsc::Sender<Command>) -> Self {
        Self(commands)
    }

    /// Sends the request (a no-op if this replica leads, the Lease is free, or it asked
    /// already).
    pub async fn request(&self) {
        let _ = self.0.send(Command::RequestHandover).await;
    }
}
