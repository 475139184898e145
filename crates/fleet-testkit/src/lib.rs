//! Test harness for fleet-rs: real local Kubernetes control planes and what tests need around
//! them.
//!
//! - [`ControlPlane`]: etcd + kube-apiserver + kube-controller-manager as local processes on
//!   free loopback ports, with generated certificates, RBAC on, an admin kubeconfig, and
//!   clients for other identities (certificate users, impersonated ServiceAccounts). Stopped on
//!   drop, also when a test panics; several can run side by side.
//! - [`binaries`]: the pinned `etcd`, `kube-apiserver`, `kube-controller-manager` and `helm`,
//!   found in `KUBEBUILDER_ASSETS` or the cache, else built once from `e2e/tools/*/go.mod`.
//! - [`wait`]: watch-based waits for conditions (no fixed sleeps), CRD apply-and-establish;
//!   [`wait_event`]: an Event about an object; [`fencing`]: the frozen-leader drill.
//! - [`process`]: child processes killed on drop; [`TcpProxy`]: cut one client off a server.
//! - [`git`]: repositories made with the real `git`, served over smart HTTP by `git http-backend`;
//!   [`tls::TlsProxy`] puts TLS with the test CA in front of it; [`file_server::FileServer`]
//!   serves a directory (a Helm chart repository made with [`helm_repo`]); [`ssh::SshServer`] serves them over ssh
//!   with a real `sshd`; [`oci::OciRegistry`] is a real OCI registry for charts.

pub mod binaries;
pub mod certs;
mod control_plane;
pub mod faults;
pub mod fencing;
pub mod file_server;
pub mod git;
pub mod helm_repo;
pub mod image;
pub mod network;
pub mod node;
pub mod oci;
pub mod ports;
pub mod process;
mod proxy;
pub mod ssh;
pub mod tls;
pub mod wait;

use std::path::{Path, PathBuf};

pub use control_plane::{
    ADMIN_USER, ControlPlane, ControlPlaneBuilder, client_from, serialize_kubeconfig,
};
pub use process::{Lifetime, ManagedProcess};
pub use proxy::TcpProxy;
pub use wait::{
    apply_crds, eventually, plane_with, wait_deleted, wait_for, wait_for_count, write_token_values,
};

/// Everything that can go wrong in the testkit; messages say what to do where they can.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{binary} not available: {message}")]
    BinaryMissing {
        binary: &'static str,
        message: String,
    },
    #[error("building {binary} with go failed:\n{message}")]
    Build {
        binary: &'static str,
        message: String,
    },
    #[error(
        "etcd at {path} is too old ({found}); Kubernetes >= 1.31 needs etcd >= 3.5.13. \
         Unset KUBEBUILDER_ASSETS or point it at a newer etcd, or run `cargo xtask tools`"
    )]
    EtcdVersion { path: PathBuf, found: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("could not start {name}: {source}")]
    Spawn {
        name: String,
        source: std::io::Error,
    },
    #[error("{name} exited ({status}); last log lines:\n{log_tail}")]
    ProcessExited {
        name: String,
        status: String,
        log_tail: String,
    },
    #[error("timed out waiting for {what}: {detail}")]
    Timeout { what: String, detail: String },
    #[error("certificate generation failed: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("kubernetes API: {0}")]
    Kube(#[source] kube::Error),
    #[error("{message}")]
    Config { message: String },
}

impl Error {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// A minimal HTTP/1.0 GET to 127.0.0.1 (etcd health, admin endpoints in tests); returns the body.
pub async fn http_get(port: u16, path: &str) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    Ok(response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or(response))
}

/// A minimal HTTP/1.0 POST to 127.0.0.1 (webhooks in tests and benchmarks); returns the status
/// code and the whole response.
pub async fn http_post(
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let mut request = format!(
        "POST {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await?;
    stream.write_all(body).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, response))
}

/// The value of a Prometheus series (`name{labels}` exactly as exposed) on
/// `127.0.0.1:port/metrics`; 0 when absent or unreachable.
pub async fn metric(port: u16, series: &str) -> f64 {
    let text = http_get(port, "/metrics").await.unwrap_or_default();
    text.lines()
        .find_map(|line| {
            line.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The sum of the series of metric `name` (`name{...}` or `name`) on `127.0.0.1:port/metrics`
/// whose labels contain `labels` (e.g. `claim="fleet-agent"`; "" for all); `None` when the
/// endpoint does not answer.
pub async fn metric_sum(port: u16, name: &str, labels: &str) -> Option<f64> {
    let text = http_get(port, "/metrics").await.ok()?;
    let sum: f64 = text
        .lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
                && line.contains(labels)
        })
        .filter_map(|line| line.rsplit(' ').next()?.trim().parse::<f64>().ok())
        .sum();
    // An empty sum is -0.0.
    Some(sum + 0.0)
}

/// The `events.k8s.io` Events with `reason` about an object named `regarding` (in `namespace`,
/// or all namespaces).
pub async fn events_about(
    client: &kube::Client,
    namespace: Option<&str>,
    reason: &str,
    regarding: &str,
) -> Result<Vec<k8s_openapi::api::events::v1::Event>, String> {
    use k8s_openapi::api::events::v1::Event;
    let api: kube::Api<Event> = match namespace {
        Some(namespace) => kube::Api::namespaced(client.clone(), namespace),
        None => kube::Api::all(client.clone()),
    };
    let list = api
        .list(&Default::default())
        .await
        .map_err(|e| e.to_string())?;
    Ok(list
        .items
        .into_iter()
        .filter(|e| {
            e.reason.as_deref() == Some(reason)
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(regarding)
        })
        .collect())
}

/// Waits until an Event with `reason` about `regarding` has a note containing `text`.
pub async fn wait_event(
    client: &kube::Client,
    namespace: Option<&str>,
    reason: &str,
    regarding: &str,
    text: &str,
) -> Result<(), Error> {
    eventually(
        &format!("a {reason} Event about {regarding}"),
        std::time::Duration::from_secs(60),
        std::time::Duration::from_millis(200),
        || async {
            let events = events_about(client, namespace, reason, regarding).await?;
            let notes: Vec<String> = events.into_iter().filter_map(|e| e.note).collect();
            if notes.iter().any(|n| n.contains(text)) {
                Ok(())
            } else {
                Err(format!("notes: {notes:?}"))
            }
        },
    )
    .await
}

/// The dynamic shards a fleet-rs binary on `127.0.0.1:port` holds (its `/readyz`).
pub async fn shards_held(port: u16) -> Result<Vec<u32>, String> {
    let body = http_get(port, "/readyz").await.map_err(|e| e.to_string())?;
    let ready: serde_json::Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
    serde_json::from_value(ready["shards"]["held"].clone()).map_err(|e| format!("{e}: {body}"))
}

/// Waits until the replicas on `ports` hold all `shards` dynamic shards between them, each
/// shard once and each replica at least one.
pub async fn wait_shards_covered(
    ports: &[u16],
    shards: u32,
    timeout: std::time::Duration,
) -> Result<(), Error> {
    wait_shard_map(ports, shards, timeout, false).await
}

/// [`wait_shards_covered`], and the hand-overs done: each replica holds its share (the
/// shards divided by the replicas, rounded down or up).
pub async fn wait_shards_balanced(
    ports: &[u16],
    shards: u32,
    timeout: std::time::Duration,
) -> Result<(), Error> {
    wait_shard_map(ports, shards, timeout, true).await
}

async fn wait_shard_map(
    ports: &[u16],
    shards: u32,
    timeout: std::time::Duration,
    balanced: bool,
) -> Result<(), Error> {
    let replicas = ports.len().max(1);
    let share = (shards as usize / replicas)..=(shards as usize).div_ceil(replicas);
    eventually(
        "every shard held by exactly one replica",
        timeout,
        std::time::Duration::from_millis(100),
        || {
            let share = share.clone();
            async move {
                let mut all = Vec::new();
                for port in ports {
                    let mine = shards_held(*port).await?;
                    if mine.is_empty() || (balanced && !share.contains(&mine.len())) {
                        return Err(format!("the replica on port {port} holds {mine:?}"));
                    }
                    all.extend(mine);
                }
                let distinct: std::collections::BTreeSet<u32> = all.iter().copied().collect();
                if all.len() == shards as usize && distinct.len() == shards as usize {
                    Ok(())
                } else {
                    Err(format!("held {all:?}"))
                }
            }
        },
    )
    .await
}

/// Waits until a fleet-rs binary's `/readyz` on `127.0.0.1:port` reports each `(lease, role)`
/// of `wanted` (`leader` or `standby`), for binaries with more than one role.
pub async fn wait_leases(
    port: u16,
    wanted: &[(&str, &str)],
    timeout: std::time::Duration,
) -> Result<(), Error> {
    eventually(
        &format!("leases {wanted:?} on port {port}"),
        timeout,
        std::time::Duration::from_millis(100),
        || async move {
            let body = http_get(port, "/readyz").await.map_err(|e| e.to_string())?;
            let ready: serde_json::Value =
                serde_json::from_str(&body).map_err(|e| e.to_string())?;
            let holds = |(lease, role): &(&str, &str)| ready["leases"][*lease] == *role;
            if wanted.iter().all(holds) {
                Ok(())
            } else {
                Err(body)
            }
        },
    )
    .await
}

/// Waits until a fleet-rs binary's `/readyz` on `127.0.0.1:port` reports `role` (`leader`
/// or `standby`).
pub async fn wait_role(port: u16, role: &str, timeout: std::time::Duration) -> Result<(), Error> {
    let wanted = format!("\"role\":\"{role}\"");
    eventually(
        &format!("role {role} on port {port}"),
        timeout,
        std::time::Duration::from_millis(100),
        || {
            let wanted = wanted.clone();
            async move {
                let body = http_get(port, "/readyz").await.map_err(|e| e.to_string())?;
                if body.contains(&wanted) {
                    Ok(())
                } else {
                    Err(body)
                }
            }
        },
    )
    .await
}

/// Waits until exactly one of the fleet-rs binaries on `ports` reports `leader` on `/readyz`:
/// the replicas of one role agree again after a fault.
pub async fn wait_one_leader(ports: &[u16], timeout: std::time::Duration) -> Result<(), Error> {
    eventually(
        "exactly one leader",
        timeout,
        std::time::Duration::from_millis(200),
        || async {
            let mut leaders = 0;
            for port in ports {
                let body = http_get(*port, "/readyz")
                    .await
                    .map_err(|e| e.to_string())?;
                leaders += usize::from(body.contains("\"role\":\"leader\""));
            }
            if leaders == 1 {
                Ok(())
            } else {
                Err(format!("{leaders} leaders"))
            }
        },
    )
    .await
}
