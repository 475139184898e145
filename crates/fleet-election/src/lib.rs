//! Kubernetes Lease leader election for every fleet-rs binary.
//!
//! Reconcile loops run only while this replica holds its `coordination.k8s.io/v1` Lease;
//! standbys watch the Lease and take over the moment it is released or expires.
//!
//! - Records are written exactly as client-go writes them, with `resourceVersion`
//!   preconditions, so a client-go elector and this one on the same Lease never both lead
//!   ([`record`]).
//! - Expiry is judged from when this replica saw the record change (robust to clock skew).
//! - Leadership is a value ([`Leadership`]): its cancellation fires when leadership is lost
//!   *or* when the renew deadline passes without a successful renew, so a leader stops before
//!   any other replica can acquire; `still_leading()` is the check before a write.
//! - [`run_while_leading`] starts work on acquire, stops it on loss (back to standby without a
//!   restart), and on shutdown stops it first and then releases the Lease.
//! - [`handover`]: a holder hands its Lease over when another replica asks (explicit drain),
//!   which keeps two roles of one binary on different replicas.
//! - [`coordinated`]: coordinated leader election (KEP-4355) where the API server offers it.
//! - [`shards`]: dynamic shards, `N` shard Leases spread over the live replicas (balanced,
//!   zone-aware), each object's writes gated by its shard's claim; one shard layout at a
//!   time (its replicas hold the base Lease together, [`Elector::shared`]).
//! - [`WarmCache`] keeps watches and caches warm on standbys; a new leader's kube-runtime
//!   controllers start from memory. Under dynamic shards a cache can hold only the objects of
//!   the shards held here ([`warm::scope`]: label-selected, listed again as they change).
//! - Logs (`tracing`) and Prometheus metrics ([`ElectionMetrics`]) show who leads and how long
//!   failovers take.

mod config;
pub mod coordinated;
mod elector;
pub mod handover;
mod leadership;
mod metrics;
pub mod record;
mod run;
pub mod shards;
pub mod store;
#[cfg(test)]
mod tests;
pub mod trace;
pub mod warm;

pub use config::{ElectionArgs, ElectionConfig, Strategy, Timings, default_identity};
pub use elector::{ElectionEvent, Elector, ElectorHandle, Role};
pub use leadership::Leadership;
pub use metrics::{ElectionMetrics, LeaseLabels};
pub use run::run_while_leading;
pub use store::{KubeLeaseStore, LeaseEvent, LeaseStore, StoreError};
pub use warm::WarmCache;
pub use warm::scope::{Coverage, Scope};

/// Errors in setting an election up. Everything at run time (conflicts, unreachable API
/// server) is handled inside the elector and shows in its events, logs and metrics.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid leader-election configuration: {message}")]
    InvalidConfig { message: String },
}
