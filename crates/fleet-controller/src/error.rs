//! The controller's write vocabulary, shared by every reconciler: its field manager and
//! why a reconcile failed.

use fleet_runtime::WriteError;

/// The field manager of the controller's writes.
pub const MANAGER: &str = "fleet-controller";

/// Why a reconcile failed (retried with backoff).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{action} {what}: {source}")]
    Api {
        action: &'static str,
        what: String,
        source: kube::Error,
    },
    #[error(transparent)]
    NotLeading(#[from] NotLeading),
    /// A write failed, or was refused because the claim was gone.
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error("finalizer: {0}")]
    Finalizer(String),
    /// A planned BundleDeployment could not be decoded for its write.
    #[error("planned BundleDeployment {what}: {source}")]
    Planned {
        what: String,
        source: serde_json::Error,
    },
}

/// A write was about to happen after leadership was lost.
#[derive(Debug, thiserror::Error)]
#[error("leadership lost: not writing")]
pub struct NotLeading;
