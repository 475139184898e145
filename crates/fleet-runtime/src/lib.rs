//! What every fleet-rs binary shares, written once: command-line and environment
//! configuration, the Kubernetes client (kubeconfig or in-cluster), logging, the admin HTTP
//! server (`/metrics`, `/healthz`, `/readyz` reporting the election role), SIGTERM handling,
//! running the binary's reconcilers only while it holds its Lease (or its shards), and what
//! every reconcile reports ([`Reconciles`]: a span, duration and errors by reason), and the
//! one way to write to the API ([`gate`]: the claim checked right before each request), and
//! Kubernetes Events for errors users should act on ([`events`]). What to write is planned
//! by [`inventory`] (create, update, prune by content hash), over a cache that the
//! [`expectations`] bring up to date with the writes it does not show yet.
//!
//! A binary is then its reconcilers plus:
//!
//! ```no_run
//! # async fn demo(args: fleet_runtime::RuntimeArgs) -> Result<(), fleet_runtime::Error> {
//! let runtime = fleet_runtime::Runtime::new("gitjob", "fleet-gitops-leader-election", &args).await?;
//! let client = runtime.client();
//! runtime
//!     .run(move |leadership| {
//!         let client = client.clone();
//!         async move {
//!             // start controllers with `client`; stop when `leadership.cancelled()` fires
//!             # let _ = client;
//!             leadership.cancelled().await;
//!         }
//!     })
//!     .await
//! # }
//! ```

mod admin;
mod args;
pub mod bundle_store;
pub mod events;
pub mod expectations;
pub mod finalizer;
pub mod gate;
pub mod inventory;
mod reconciles;
mod runtime;
mod telemetry;

pub use admin::ReadyState;
pub use args::{LogFormat, RuntimeArgs};
pub use gate::{WriteError, WriteGate, Writer};
pub use reconciles::Reconciles;
pub use runtime::Runtime;
pub use telemetry::init_tracing;

/// Why a binary could not start or serve.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubeconfig {path}: {message}")]
    Kubeconfig { path: String, message: String },
    #[error("no Kubernetes configuration found (give --kubeconfig or run in a cluster): {0}")]
    NoConfig(String),
    #[error("Kubernetes client: {0}")]
    Client(#[source] kube::Error),
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error(transparent)]
    Election(#[from] fleet_election::Error),
    #[error("cannot serve on {address}: {source}")]
    Bind {
        address: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("signal handler: {0}")]
    Signal(#[source] std::io::Error),
    #[error(
        "namespace {namespace} does not exist and this identity may not create it: run `kubectl create namespace {namespace}`, or pass --namespace"
    )]
    Namespace { namespace: String },
}

/// Drives a kube-runtime controller's result stream to its end, logging failed reconciles at
/// debug level (the reconcilers log their own errors with context).
pub async fn drain_controller<K, E>(
    results: impl futures::Stream<
        Item = Result<
            (
                kube::runtime::reflector::ObjectRef<K>,
                kube::runtime::controller::Action,
            ),
            kube::runtime::controller::Error<E, kube::runtime::watcher::Error>,
        >,
    >,
) where
    K: kube::Resource,
    K::DynamicType: std::fmt::Debug,
    E: std::error::Error + 'static,
{
    use futures::StreamExt as _;
    results
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "controller event");
            }
        })
        .await;
}
