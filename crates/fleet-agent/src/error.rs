//! Why a reconcile of the agent could not finish (retried with backoff).

/// A reconcile that could not finish.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{action}: {source}")]
    Api { action: String, source: kube::Error },
    /// A write failed, or was refused because the role's term ended.
    #[error(transparent)]
    Write(#[from] fleet_runtime::WriteError),
    /// The term is ending: no new helm run starts.
    #[error("leadership lost")]
    NotLeading,
    #[error("finalizer: {0}")]
    Finalizer(String),
    #[error("{0}")]
    Deploy(String),
}
