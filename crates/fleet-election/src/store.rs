//! Where the Lease lives. [`KubeLeaseStore`] is the real one; the elector is generic over
//! [`LeaseStore`] so its state machine can also be unit-tested under virtual time with an
//! in-memory store (the integration tests run it against a real API server).

use std::future::Future;

use futures::StreamExt;
use futures::stream::BoxStream;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, PostParams};
use kube::runtime::watcher;

/// Why a Lease operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Someone else wrote first (HTTP 409: stale `resourceVersion` or the Lease already exists).
    #[error("conflict: {0}")]
    Conflict(String),
    /// Anything else: unreachable API server, timeout, 403, 5xx.
    #[error("{0}")]
    Other(String),
}

/// A change seen on the Lease's watch.
#[derive(Debug, Clone)]
pub enum LeaseEvent {
    /// The Lease as it is now.
    Changed(Box<Lease>),
    /// The Lease does not exist (deleted).
    Deleted,
    /// The watch failed; it is restarted with backoff by the store.
    Error(String),
}

/// The operations the elector needs on its one Lease. Writes must honour the
/// `metadata.resourceVersion` of the object they are given.
pub trait LeaseStore: Send + Sync + 'static {
    fn get(&self) -> impl Future<Output = Result<Option<Lease>, StoreError>> + Send;
    fn create(&self, lease: &Lease) -> impl Future<Output = Result<Lease, StoreError>> + Send;
    /// Replaces the Lease; fails with [`StoreError::Conflict`] if its resourceVersion is stale.
    fn replace(&self, lease: &Lease) -> impl Future<Output = Result<Lease, StoreError>> + Send;
    /// A stream of changes to the Lease, restarted on errors.
    fn watch(&self) -> BoxStream<'static, LeaseEvent>;
    /// The Lease's name.
    fn name(&self) -> &str;
}

/// The Lease in a Kubernetes API server.
#[derive(Clone)]
pub struct KubeLeaseStore {
    api: Api<Lease>,
    name: String,
}

impl std::fmt::Debug for KubeLeaseStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeLeaseStore")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl KubeLeaseStore {
    pub fn new(client: kube::Client, namespace: &str, name: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
        }
    }
}

fn classify(err: kube::Error) -> StoreError {
    match err {
        kube::Error::Api(status) if status.code == 409 => StoreError::Conflict(status.message),
        other => StoreError::Other(other.to_string()),
    }
}

impl LeaseStore for KubeLeaseStore {
    async fn get(&self) -> Result<Option<Lease>, StoreError> {
        self.api.get_opt(&self.name).await.map_err(classify)
    }

    async fn create(&self, lease: &Lease) -> Result<Lease, StoreError> {
        self.api
            .create(&PostParams::default(), lease)
            .await
            .map_err(classify)
    }

    async fn replace(&self, lease: &Lease) -> Result<Lease, StoreError> {
        self.api
            .replace(&self.name, &PostParams::default(), lease)
            .await
            .map_err(classify)
    }

    fn watch(&self) -> BoxStream<'static, LeaseEvent> {
        use kube::runtime::WatchStreamExt;
        let config = watcher::Config::default().fields(&format!("metadata.name={}", self.name));
        watcher(self.api.clone(), config)
            .default_backoff()
            .filter_map(|event| async move {
                match event {
                    Ok(watcher::Event::Apply(lease) | watcher::Event::InitApply(lease)) => {
                        Some(LeaseEvent::Changed(Box::new(lease)))
                    }
                    Ok(watcher::Event::Delete(_)) => Some(LeaseEvent::Deleted),
                    Ok(watcher::Event::Init | watcher::Event::InitDone) => None,
                    Err(e) => Some(LeaseEvent::Error(e.to_string())),
                }
            })
            .boxed()
    }

    fn name(&self) -> &str {
        &self.name
    }
}
