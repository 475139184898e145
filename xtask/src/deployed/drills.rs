//! The drills of the deployed scenario: a leader taken away (pod deleted, force-deleted, its
//! node lost) while a git change is in flight, timed until a new leader holds the Lease and
//! until the change lands; the agents' drills also check that no release was installed
//! twice and no Cluster looked NotReady; and a PodDisruptionBudget-respecting drain.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use fleet_testkit::git::GitRepoFixture;
use fleet_testkit::wait_for;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::DeleteParams;

use super::inspect::{holder, system_pods, wait_available, wait_pods_restarted};
use super::scenario::{Component, LOCAL_AGENT, WAIT, WORKSPACE, as_downstreams};
use super::{Cluster, Clusters, SYSTEM_NAMESPACE, say};
use crate::{agent_failover, example};

/// How a drill takes the leader away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disruption {
    /// `kubectl delete pod`: the kubelet sends SIGTERM, the leader releases its Lease.
    Delete,
    /// `kubectl delete pod --grace-period=0 --force`.
    ForceDelete,
    /// The node running the leader is lost (kubelet, runtime and containers killed).
    NodeLoss,
}

impl Disruption {
    fn label(self) -> &'static str {
        match self {
            Disruption::Delete => "pod delete (SIGTERM)",
            Disruption::ForceDelete => "force delete",
            Disruption::NodeLoss => "node lost",
        }
    }
}

/// One drill: commit a change, take the leader of `component` away, time the hand-over and
/// the change landing, then wait until the component is back at full strength.
pub async fn drill<C: Clusters>(
    clusters: &mut C,
    repo: &GitRepoFixture,
    component: Component,
    disruption: Disruption,
    round: usize,
) -> anyhow::Result<String> {
    let upstream = clusters.upstream().clone();
    drill_on(clusters, &upstream, repo, component, disruption, round).await
}

/// A drill on the agent of downstream cluster `cluster`: besides the hand-over and the change
/// landing, each Helm release there rises by exactly one revision (no duplicate install by
/// two agents) and no Cluster shows NotReady meanwhile.
pub async fn agent_drill<C: Clusters>(
    clusters: &mut C,
    cluster: &Cluster,
    repo: &GitRepoFixture,
    disruption: Disruption,
    round: usize,
) -> anyhow::Result<String> {
    let before = agent_failover::release_revisions(&cluster.client).await?;
    let watcher =
        agent_failover::NotReadyWatcher::start(clusters.upstream().client.clone(), WORKSPACE);
    let line = drill_on(clusters, cluster, repo, LOCAL_AGENT, disruption, round).await?;
    let after = agent_failover::release_revisions(&cluster.client).await?;
    let changed = agent_failover::one_revision_up(&before, &after)?;
    ensure!(
        !watcher.stop(),
        "a Cluster showed NotReady during the agent failover"
    );
    say(&format!(
        "{}: release {changed} rose by exactly one revision, no Cluster NotReady",
        cluster.name
    ));
    Ok(format!(
        "{}/{line}, 0 duplicate releases, 0 NotReady",
        cluster.name
    ))
}

/// Takes the leader of `component` in cluster `on` away while a change is in flight.
async fn drill_on<C: Clusters>(
    clusters: &mut C,
    on: &Cluster,
    repo: &GitRepoFixture,
    component: Component,
    disruption: Disruption,
    round: usize,
) -> anyhow::Result<String> {
    let client = on.client.clone();
    let downstreams = as_downstreams(clusters.downstreams());
    let leases: Api<Lease> = Api::namespaced(client.clone(), SYSTEM_NAMESPACE);
    let pods: Api<Pod> = Api::namespaced(client.clone(), SYSTEM_NAMESPACE);
    let old = holder(&leases.get(component.lease).await?);
    let pod = pods
        .get(&old)
        .await
        .with_context(|| format!("leader pod {old}"))?;
    let node = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_default();
    let version = format!("v{round}");
    repo.commit_files(
        "change",
        &[("hello/configmap.yaml", &example::hello(&version))],
    )?;
    let started = Instant::now();
    match disruption {
        Disruption::Delete => {
            pods.delete(&old, &DeleteParams::default()).await?;
        }
        Disruption::ForceDelete => {
            pods.delete(
                &old,
                &DeleteParams {
                    grace_period_seconds: Some(0),
                    ..DeleteParams::default()
                },
            )
            .await?;
        }
        Disruption::NodeLoss => clusters.stop_node(&node).await?,
    }
    let new = wait_for(&leases, component.lease, WAIT, |l| {
        let h = holder(l);
        !h.is_empty() && h != old
    })
    .await
    .with_context(|| format!("a new holder of {}", component.lease))?;
    let took = started.elapsed();
    example::wait_version(&downstreams, &version).await?;
    let landed = started.elapsed();
    say(&format!(
        "{} leader {old} on {node}: {}; {} took over in {:.2}s, change {version} landed in {:.2}s",
        component.deployment,
        disruption.label(),
        holder(&new),
        took.as_secs_f64(),
        landed.as_secs_f64()
    ));
    if disruption == Disruption::NodeLoss {
        let back = Instant::now();
        let since = jiff::Timestamp::now();
        clusters.start_node(&node).await?;
        wait_pods_restarted(&client, &node, since).await?;
        say(&format!(
            "node {node} back, its pods restarted and Ready in {:.1}s",
            back.elapsed().as_secs_f64()
        ));
    }
    wait_available(&client, component.deployment).await?;
    Ok(format!(
        "{} {}: new leader in {:.2}s, change landed in {:.2}s",
        component.lease,
        disruption.label(),
        took.as_secs_f64(),
        landed.as_secs_f64()
    ))
}

/// `kubectl drain` of the node with the most of the stack's pods, while every component is
/// watched: none may be left without a ready replica (the PodDisruptionBudgets hold it).
pub async fn drain(cluster: &Cluster, components: &[Component]) -> anyhow::Result<()> {
    let client = &cluster.client;
    for component in components {
        wait_available(client, component.deployment).await?;
    }
    let pods = system_pods(client).await?;
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for pod in &pods {
        *per_node.entry(pod.node.clone()).or_default() += 1;
    }
    let (node, count) = per_node
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .context("no pods")?;
    let watched: Vec<&'static str> = components.iter().map(|c| c.deployment).collect();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), SYSTEM_NAMESPACE);
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let watcher = tokio::spawn(async move {
        let mut lowest: BTreeMap<&'static str, i32> = BTreeMap::new();
        loop {
            for name in &watched {
                if let Ok(d) = deployments.get(name).await {
                    let ready = d.status.and_then(|s| s.ready_replicas).unwrap_or(0);
                    let entry = lowest.entry(name).or_insert(ready);
                    *entry = (*entry).min(ready);
                }
            }
            if stopped.try_recv().is_ok() {
                return lowest;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let started = Instant::now();
    let output = tokio::process::Command::new("kubectl")
        .args([
            "drain",
            &node,
            "--ignore-daemonsets",
            "--delete-emptydir-data",
        ])
        .args(["--timeout=300s", "--kubeconfig"])
        .arg(&cluster.kubeconfig)
        .output()
        .await
        .context("kubectl drain (kubectl must be on PATH)")?;
    let took = started.elapsed();
    for component in components {
        wait_available(client, component.deployment).await?;
    }
    let _ = stop.send(());
    let lowest = watcher.await?;
    ensure!(
        output.status.success(),
        "kubectl drain {node}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let uncordon = Command::new("kubectl")
        .args(["uncordon", &node, "--kubeconfig"])
        .arg(&cluster.kubeconfig)
        .output()?;
    ensure!(uncordon.status.success(), "kubectl uncordon {node}");
    for (name, ready) in &lowest {
        ensure!(
            *ready >= 1,
            "{name} had {ready} ready replicas during the drain of {node}"
        );
    }
    say(&format!(
        "kubectl drain {node} ({count} of the stack's pods) in {:.1}s; fewest ready replicas meanwhile: {}",
        took.as_secs_f64(),
        lowest
            .iter()
            .map(|(n, r)| format!("{n} {r}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    Ok(())
}
