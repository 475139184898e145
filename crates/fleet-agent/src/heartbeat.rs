//! The agent's heartbeat: its Cluster's `status.agent.lastSeen` (and namespace), every
//! `interval` while it leads. Fleet's is 15 minutes, too slow to notice a dead cluster; the
//! controller marks a Cluster not Ready when it stops (`--agent-timeout`).

use std::time::Duration;

use fleet_api::Cluster;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

/// Reports every `interval` until `stop`.
pub async fn run(
    writer: fleet_runtime::Writer,
    upstream: Client,
    namespace: String,
    name: String,
    agent_namespace: String,
    interval: Duration,
    stop: CancellationToken,
) {
    let api: Api<Cluster> = Api::namespaced(upstream, &namespace);
    loop {
        let patch = serde_json::json!({"status": {"agent": {
            "lastSeen": jiff::Timestamp::now().to_string(),
            "namespace": agent_namespace,
        }}});
        if let Err(error) = writer
            .patch_status(&api, &name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            tracing::warn!(cluster = %name, %namespace, %error, "heartbeat failed; retrying at the next interval");
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}
