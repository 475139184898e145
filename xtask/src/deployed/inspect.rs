//! What the deployed scenario looks at: the stack's pods with their nodes and zones, the
//! Lease holders, Deployments' availability and pods restarted after a node came back.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use fleet_testkit::wait_for;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};

use super::scenario::{Component, WAIT};
use super::{SYSTEM_NAMESPACE, say};

const ZONE: &str = "topology.kubernetes.io/zone";

/// A pod of the stack: where it runs and whether it is ready.
pub struct PodPlace {
    pub name: String,
    pub component: String,
    pub node: String,
    pub ready: bool,
}

pub async fn system_pods(client: &Client) -> anyhow::Result<Vec<PodPlace>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), SYSTEM_NAMESPACE);
    Ok(pods
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| PodPlace {
            name: p.name_any(),
            component: p
                .labels()
                .get("app.kubernetes.io/name")
                .cloned()
                .unwrap_or_default(),
            node: p
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_default(),
            ready: p
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True")),
        })
        .collect())
}

pub async fn zones(client: &Client) -> anyhow::Result<BTreeMap<String, String>> {
    let nodes: Api<Node> = Api::all(client.clone());
    Ok(nodes
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .map(|n| {
            let zone = n.labels().get(ZONE).cloned().unwrap_or_else(|| "-".into());
            (n.name_any(), zone)
        })
        .collect())
}

pub async fn print_pods(client: &Client) -> anyhow::Result<()> {
    let zones = zones(client).await?;
    for pod in system_pods(client).await? {
        say(&format!(
            "pod {:<40} {:<18} node {:<14} zone {:<3} {}",
            pod.name,
            pod.component,
            pod.node,
            zones.get(&pod.node).map_or("-", String::as_str),
            if pod.ready { "Ready" } else { "not ready" }
        ));
    }
    Ok(())
}

/// Each component's Lease holder with its node and zone; one holder each.
pub async fn print_leaders(client: &Client, components: &[Component]) -> anyhow::Result<()> {
    let zones = zones(client).await?;
    let pods = system_pods(client).await?;
    let leases: Api<Lease> = Api::namespaced(client.clone(), SYSTEM_NAMESPACE);
    let mut per_zone: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for component in components {
        let lease = wait_for(&leases, component.lease, WAIT, |l| !holder(l).is_empty()).await?;
        let leader = holder(&lease);
        let node = pods
            .iter()
            .find(|p| p.name == leader)
            .map_or("?", |p| p.node.as_str());
        let zone = zones.get(node).map_or("-", String::as_str);
        per_zone
            .entry(zone.to_owned())
            .or_default()
            .push(component.deployment);
        say(&format!(
            "lease {}: held by {leader} (node {node}, zone {zone})",
            component.lease
        ));
    }
    say(&format!(
        "leaders per zone: {}",
        per_zone
            .iter()
            .map(|(z, c)| format!("{z}: {}", c.join(" ")))
            .collect::<Vec<_>>()
            .join("; ")
    ));
    Ok(())
}

/// Waits until every pod of the stack on `node` runs a container started after `since` and
/// is Ready: until then the API still shows the statuses from before the node was lost, and a
/// PodDisruptionBudget would count them as healthy.
pub async fn wait_pods_restarted(
    client: &Client,
    node: &str,
    since: jiff::Timestamp,
) -> anyhow::Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), SYSTEM_NAMESPACE);
    let deadline = Instant::now() + WAIT;
    loop {
        let list = pods.list(&ListParams::default()).await?;
        let stale: Vec<String> = list
            .items
            .iter()
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node))
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| !restarted_and_ready(p, since))
            .map(ResourceExt::name_any)
            .collect();
        if stale.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "pods on {node} not restarted and Ready: {}",
                stale.join(", ")
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn restarted_and_ready(pod: &Pod, since: jiff::Timestamp) -> bool {
    let Some(status) = pod.status.as_ref() else {
        return false;
    };
    let ready = status
        .conditions
        .as_ref()
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let started = status
        .container_statuses
        .as_ref()
        .is_some_and(|containers| {
            containers.iter().all(|c| {
                c.state
                    .as_ref()
                    .and_then(|s| s.running.as_ref())
                    .and_then(|r| r.started_at.as_ref())
                    .is_some_and(|t| t.0 >= since)
            })
        });
    ready && started
}

/// Waits until a Deployment has all its replicas updated and available (readiness probes).
pub async fn wait_available(client: &Client, name: &str) -> anyhow::Result<()> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), SYSTEM_NAMESPACE);
    let result = wait_for(&deployments, name, WAIT, |d| {
        let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        d.status.as_ref().is_some_and(|s| {
            s.observed_generation == d.metadata.generation
                && s.updated_replicas == Some(want)
                && s.available_replicas == Some(want)
                && s.replicas == Some(want)
        })
    })
    .await
    .with_context(|| format!("Deployment {SYSTEM_NAMESPACE}/{name} available"));
    if let Err(error) = result {
        let pods: Api<Pod> = Api::namespaced(client.clone(), SYSTEM_NAMESPACE);
        let list = pods.list(&ListParams::default()).await?;
        let states: Vec<String> = list
            .items
            .iter()
            .map(|p| {
                let status = p.status.clone().unwrap_or_default();
                format!(
                    "{} on {}: {} {}",
                    p.name_any(),
                    p.spec
                        .as_ref()
                        .and_then(|s| s.node_name.clone())
                        .unwrap_or_default(),
                    status.phase.unwrap_or_default(),
                    status.message.unwrap_or_default()
                )
            })
            .collect();
        return Err(error.context(format!("pods: {}", states.join("; "))));
    }
    Ok(())
}

pub fn holder(lease: &Lease) -> String {
    lease
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.clone())
        .unwrap_or_default()
}
