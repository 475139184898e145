//! Agent failover drills on the local stack: the fleet-agent leader of one downstream cluster
//! is stopped (SIGKILL or SIGTERM) while a bundle change is in flight. The change must land on
//! that cluster, each Helm release's revision must rise by exactly one (no duplicate install by
//! two agents), no Cluster may look NotReady meanwhile, and drift must still be corrected by
//! the agent that took over.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use fleet_api::Cluster;
use fleet_testkit::git::GitRepoFixture;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};

use crate::example;
use crate::stack::{NS, Stack};

/// The agents' Lease in each downstream cluster.
const AGENT_LEASE: &str = "fleet-agent";

/// One drill on downstream cluster `plane` (1-based); returns the line to print at the end.
pub async fn drill(
    stack: &mut Stack,
    repo: &GitRepoFixture,
    plane: usize,
    version: &str,
    kill: bool,
) -> anyhow::Result<String> {
    let downstream = stack.downstream_clusters()[plane - 1].clone();
    let before = release_revisions(&downstream.client).await?;
    let watcher = NotReadyWatcher::start(stack.upstream.client(), NS);
    repo.commit_files(
        "change",
        &[("hello/configmap.yaml", &example::hello(version))],
    )?;
    let started = Instant::now();
    let (old, new, took) = stack.failover_on(plane, AGENT_LEASE, kill).await?;
    example::wait_version(std::slice::from_ref(&downstream), version).await?;
    let landed = started.elapsed();

    let after = release_revisions(&downstream.client).await?;
    let changed = one_revision_up(&before, &after)?;

    // Drift after the hand-over: the new leader puts the object back (correctDrift).
    let configmaps: Api<ConfigMap> = Api::namespaced(downstream.client.clone(), "demo");
    let drifted = Instant::now();
    configmaps
        .patch(
            "hello",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"data": {"version": "drifted"}})),
        )
        .await?;
    example::wait_version(std::slice::from_ref(&downstream), version)
        .await
        .context("drift corrected by the new agent leader")?;
    let corrected = drifted.elapsed();
    let not_ready = watcher.stop();
    ensure!(
        !not_ready,
        "a Cluster showed NotReady during the agent failover"
    );

    let signal = if kill { "SIGKILL" } else { "SIGTERM" };
    println!(
        "==> agent failover on {} ({signal}): {old} -> {new} in {:.2}s, change {version} landed in {:.2}s, release {changed}, drift corrected in {:.2}s, no Cluster NotReady",
        downstream.name,
        took.as_secs_f64(),
        landed.as_secs_f64(),
        corrected.as_secs_f64()
    );
    stack.restart(&old)?;
    Ok(format!(
        "{}/{AGENT_LEASE} {signal}: new leader in {:.2}s, change landed in {:.2}s, 0 duplicate releases, 0 NotReady",
        downstream.name,
        took.as_secs_f64(),
        landed.as_secs_f64()
    ))
}

/// The one release whose revision rose, by exactly one, between two looks (`ns/name a -> b`);
/// an error when none, several, or by more than one (a duplicate install).
pub fn one_revision_up(
    before: &BTreeMap<String, i64>,
    after: &BTreeMap<String, i64>,
) -> anyhow::Result<String> {
    let changed: Vec<(&String, i64, i64)> = after
        .iter()
        .map(|(release, rev)| (release, before.get(release).copied().unwrap_or(0), *rev))
        .filter(|(_, old, new)| old != new)
        .collect();
    match changed.as_slice() {
        [(release, old, new)] if *new == old + 1 => {
            Ok(format!("{release} revision {old} -> {new}"))
        }
        _ => anyhow::bail!("expected one release one revision up, got {changed:?}"),
    }
}

/// Each Helm release of a cluster with its newest revision (from helm's release Secrets).
pub async fn release_revisions(client: &Client) -> anyhow::Result<BTreeMap<String, i64>> {
    let secrets: Api<Secret> = Api::all(client.clone());
    let mut revisions = BTreeMap::new();
    for secret in secrets
        .list(&ListParams::default().labels("owner=helm"))
        .await?
        .items
    {
        let labels = secret.labels();
        let (Some(name), Some(version)) = (labels.get("name"), labels.get("version")) else {
            continue;
        };
        let release = format!("{}/{name}", secret.namespace().unwrap_or_default());
        let version: i64 = version.parse().unwrap_or(0);
        let entry = revisions.entry(release).or_insert(version);
        *entry = (*entry).max(version);
    }
    Ok(revisions)
}

/// Polls every Cluster of the workspace while a drill runs: one whose display state is
/// NotReady, or whose agent is reported as not checking in, is remembered.
pub struct NotReadyWatcher {
    stop: Arc<AtomicBool>,
    seen: Arc<AtomicBool>,
}

impl NotReadyWatcher {
    pub fn start(client: Client, namespace: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(AtomicBool::new(false));
        let (stop_flag, seen_flag) = (stop.clone(), seen.clone());
        let namespace = namespace.to_owned();
        tokio::spawn(async move {
            let clusters: Api<Cluster> = Api::namespaced(client, &namespace);
            while !stop_flag.load(Ordering::SeqCst) {
                if let Ok(list) = clusters.list(&ListParams::default()).await
                    && list.items.iter().any(not_ready)
                {
                    seen_flag.store(true, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Self { stop, seen }
    }

    /// Stops watching; whether a NotReady Cluster was seen.
    pub fn stop(self) -> bool {
        self.stop.store(true, Ordering::SeqCst);
        self.seen.load(Ordering::SeqCst)
    }
}

fn not_ready(cluster: &Cluster) -> bool {
    let Some(status) = cluster.status.as_ref() else {
        return false;
    };
    status.display.state.as_deref() == Some("NotReady")
        || status.conditions.iter().any(|c| {
            c.message
                .as_deref()
                .is_some_and(|m| m.contains("has not checked in"))
        })
}
