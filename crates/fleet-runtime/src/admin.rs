//! The admin HTTP server: `/metrics` (Prometheus text format), `/healthz` (the process
//! serves), `/readyz` (ready, with this replica's election role). Followers serve it too.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use fleet_election::Role;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::Error;

/// What `/readyz` reports.
#[derive(Debug, Clone)]
pub struct ReadyState {
    pub component: String,
    pub identity: String,
    pub roles: watch::Receiver<Role>,
    /// Every Lease this binary elects through (the main one first) and this replica's role
    /// in each.
    pub leases: Vec<(String, watch::Receiver<Role>)>,
    /// With dynamic shards: the shards this replica holds, and the owner map it sees.
    pub shards: Option<fleet_election::shards::ShardSet>,
}

#[derive(Clone)]
struct AdminState {
    registry: Arc<Mutex<Registry>>,
    ready: ReadyState,
}

async fn metrics(State(state): State<AdminState>) -> impl IntoResponse {
    let mut body = String::new();
    let encoded = state
        .registry
        .lock()
        .map_err(|_| std::fmt::Error)
        .and_then(|registry| prometheus_client::encoding::text::encode(&mut body, &registry));
    match encoded {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        ),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain")],
            "metrics could not be encoded".to_owned(),
        ),
    }
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<AdminState>) -> impl IntoResponse {
    let role = state.ready.roles.borrow().clone();
    let (role, holder) = match role {
        // A sharded replica leads its shards, listed under "shards", and no Lease of its own.
        _ if state.ready.shards.is_some() => ("sharded", None),
        Role::Leading(_) => ("leader", Some(state.ready.identity.clone())),
        Role::Standby { holder } => ("standby", holder),
    };
    let leases: serde_json::Map<String, serde_json::Value> = state
        .ready
        .leases
        .iter()
        .map(|(lease, roles)| {
            let role = match &*roles.borrow() {
                Role::Leading(_) => "leader",
                Role::Standby { .. } => "standby",
            };
            (lease.clone(), role.into())
        })
        .collect();
    let body = serde_json::json!({
        "status": "ok",
        "component": state.ready.component,
        "identity": state.ready.identity,
        "role": role,
        "leader": holder,
        "leases": leases,
    });
    let mut body = body;
    if let Some(shards) = &state.ready.shards {
        body["shards"] = serde_json::json!({
            "held": shards.held(),
            "owners": shards.owners(),
            "layout_held": shards.layout_held(),
        });
    }
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
}

/// Binds every address (distinct ones only) and serves until `shutdown` fires.
pub(crate) async fn serve(
    addresses: &[SocketAddr],
    registry: Arc<Mutex<Registry>>,
    ready: ReadyState,
    shutdown: CancellationToken,
) -> Result<Vec<tokio::task::JoinHandle<()>>, Error> {
    let router = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(AdminState { registry, ready });
    let mut unique: Vec<SocketAddr> = addresses.to_vec();
    unique.dedup();
    let mut tasks = Vec::new();
    for address in unique {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|source| Error::Bind { address, source })?;
        let bound = listener.local_addr().unwrap_or(address);
        tracing::info!(address = %bound, "serving /metrics, /healthz and /readyz");
        let router = router.clone();
        let shutdown = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(async move { shutdown.cancelled().await })
                .await;
            if let Err(error) = served {
                tracing::error!(address = %bound, %error, "admin server failed");
            }
        }));
    }
    Ok(tasks)
}
