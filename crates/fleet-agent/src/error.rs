//! Why a reconcile of the agent could not finish (retried with backoff).

/// A reconcile that could not finish.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{action}: {source}")]
    Api { action: String, source: kube::Error },
    #[error("leadership lost")]
    NotLeading,
    #[error("finalizer: {0}")]
    Finalizer(String),
    #[error("{0}")]
    Deploy(String),
}
