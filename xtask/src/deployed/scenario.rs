//! The scenario every provider runs: install the chart as the README says, check the pods,
//! their probes, their Leases and their spread over zones, deploy a GitRepo, then the drills
//! (leader pod deleted, force-deleted, its node lost; a node drained under its
//! PodDisruptionBudgets) with a git change in flight each time.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use fleet_api::{Cluster as FleetCluster, ClusterGroup, ClusterRegistrationToken, GitRepo};
use fleet_testkit::binaries::{Tool, ensure as ensure_tool};
use fleet_testkit::git::{GitHttpServer, GitRepoFixture};
use fleet_testkit::{wait_for, wait_for_count};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Secret};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client, ResourceExt};

use super::{Cluster, Clusters, SYSTEM_NAMESPACE, say};
use crate::{agent_failover, example};

const WAIT: Duration = Duration::from_secs(180);
/// The workspace downstream clusters register into, as Fleet's default.
const WORKSPACE: &str = "fleet-default";
const ZONE: &str = "topology.kubernetes.io/zone";

/// A leader-elected component of the chart: its Deployment and its Lease.
#[derive(Debug, Clone, Copy)]
pub struct Component {
    pub deployment: &'static str,
    pub lease: &'static str,
}

/// The upstream components and their Fleet Lease names.
pub const COMPONENTS: [Component; 3] = [
    Component {
        deployment: "fleet-controller",
        lease: "fleet-controller-leader-election-shard",
    },
    Component {
        deployment: "gitjob",
        lease: "fleet-gitops-leader-election-shard",
    },
    Component {
        deployment: "helmops",
        lease: "fleet-helmops-leader-election-shard",
    },
];

/// The chart's agent for the management cluster itself.
const LOCAL_AGENT: Component = Component {
    deployment: "fleet-agent",
    lease: "fleet-agent",
};

/// How a drill takes the leader away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Disruption {
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

/// The README's install commands (`release` is `fleet` upstream, `fleet-agent` downstream),
/// run with the pinned helm.
pub fn install_chart(cluster: &Cluster, release: &str, extra: &[String]) -> anyhow::Result<()> {
    let helm = ensure_tool(Tool::Helm)?;
    let chart = crate::image::workspace_root().join("charts/fleet");
    let mut command = Command::new(helm);
    command
        .env("KUBECONFIG", &cluster.kubeconfig)
        .args(["install", release])
        .arg(&chart)
        .args(["--namespace", SYSTEM_NAMESPACE, "--create-namespace"])
        .args(extra);
    let started = Instant::now();
    let output = command.output().context("helm install")?;
    if !output.status.success() {
        bail!(
            "helm install into {} failed: {}",
            cluster.name,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    say(&format!(
        "helm install {release} charts/fleet -n {SYSTEM_NAMESPACE} {} into {} ({:.1}s)",
        extra.join(" "),
        cluster.name,
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// Runs the whole scenario against a provider's clusters.
pub async fn run<C: Clusters>(clusters: &mut C, work: &Path) -> anyhow::Result<()> {
    let upstream = clusters.upstream().clone();
    let started = Instant::now();
    let ca_file = work.join("upstream-ca.pem");
    std::fs::write(&ca_file, &upstream.ca_pem)?;
    install_chart(
        &upstream,
        "fleet",
        &[
            "--set".into(),
            format!("apiServerURL={}", upstream.api_url_for_pods),
            "--set-file".into(),
            format!("apiServerCA={}", ca_file.display()),
            "--set".into(),
            "image.pullPolicy=Never".into(),
        ],
    )?;
    let client = upstream.client.clone();
    let mut all = COMPONENTS.to_vec();
    all.push(LOCAL_AGENT);
    for component in &all {
        wait_available(&client, component.deployment).await?;
    }
    say(&format!(
        "every component Available through its probes {:.1}s after helm install",
        started.elapsed().as_secs_f64()
    ));
    print_pods(&client).await?;
    print_leaders(&client, &all).await?;

    let downstreams = clusters.downstreams().to_vec();
    register_agents(&upstream, &downstreams, work).await?;

    let targets = as_downstreams(&downstreams);
    let repo = example::repo()?;
    let server = GitHttpServer::start_on(repo.parent_dir(), None, clusters.host_ip()).await?;
    let gitrepo: GitRepo = serde_saphyr::from_str(&format!(
        "apiVersion: fleet.cattle.io/v1alpha1\nkind: GitRepo\nmetadata:\n  name: demo\n  namespace: {WORKSPACE}\nspec:\n  repo: {}\n  pollingInterval: 2s\n  paths: [hello, chart, kustomize]\n  targets:\n  - clusterGroup: default\n",
        server.url_of(&repo)
    ))?;
    let deployed = Instant::now();
    Api::<GitRepo>::namespaced(client.clone(), WORKSPACE)
        .create(&PostParams::default(), &gitrepo)
        .await?;
    example::check_deployed(&targets, "v1", true)
        .await
        .with_context(|| {
            format!(
                "GitRepo demo deployed by the pods; logs in {}",
                work.display()
            )
        })?;
    say(&format!(
        "GitRepo demo (git over HTTP from the pods: plain manifests, a Helm chart, kustomize) deployed on {} downstream clusters in {:.1}s",
        downstreams.len(),
        deployed.elapsed().as_secs_f64()
    ));

    let mut results = Vec::new();
    let mut round = 1;
    for component in COMPONENTS {
        for disruption in [Disruption::Delete, Disruption::ForceDelete] {
            round += 1;
            results.push(drill(clusters, &repo, component, disruption, round).await?);
        }
    }
    round += 1;
    results.push(drill(clusters, &repo, COMPONENTS[1], Disruption::NodeLoss, round).await?);
    // The agents, the reason multi-replica agents exist: the one installed with the chart and
    // the one the controller imported.
    for cluster in &downstreams {
        for disruption in [Disruption::Delete, Disruption::ForceDelete] {
            round += 1;
            results.push(agent_drill(clusters, cluster, &repo, disruption, round).await?);
        }
    }
    drain(&upstream, &all).await?;
    print_leaders(&client, &all).await?;
    example::helmop(&client, WORKSPACE, &targets, clusters.host_ip()).await?;
    example::prune(&client, WORKSPACE, &targets, &repo).await?;
    for line in &results {
        say(&format!("failover {line}"));
    }
    Ok(())
}

/// With `keep`: prints every cluster's kubeconfig and waits for Ctrl-C.
pub async fn keep_running<C: Clusters>(clusters: &C, keep: bool) -> anyhow::Result<()> {
    if !keep {
        return Ok(());
    }
    for cluster in std::iter::once(clusters.upstream()).chain(clusters.downstreams()) {
        say(&format!(
            "{}: export KUBECONFIG={}",
            cluster.name,
            cluster.kubeconfig.display()
        ));
    }
    say("Ctrl-C stops everything");
    tokio::signal::ctrl_c().await?;
    Ok(())
}

/// One drill: commit a change, take the leader of `component` away, time the hand-over and
/// the change landing, then wait until the component is back at full strength.
async fn drill<C: Clusters>(
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
async fn agent_drill<C: Clusters>(
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
async fn drain(cluster: &Cluster, components: &[Component]) -> anyhow::Result<()> {
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

/// A pod of the stack: where it runs and whether it is ready.
struct PodPlace {
    name: String,
    component: String,
    node: String,
    ready: bool,
}

async fn system_pods(client: &Client) -> anyhow::Result<Vec<PodPlace>> {
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

async fn zones(client: &Client) -> anyhow::Result<BTreeMap<String, String>> {
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

async fn print_pods(client: &Client) -> anyhow::Result<()> {
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
async fn print_leaders(client: &Client, components: &[Component]) -> anyhow::Result<()> {
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
async fn wait_pods_restarted(
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

fn holder(lease: &Lease) -> String {
    lease
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.clone())
        .unwrap_or_default()
}

fn as_downstreams(clusters: &[Cluster]) -> Vec<example::Downstream> {
    clusters
        .iter()
        .map(|c| example::Downstream {
            name: c.name.clone(),
            client: c.client.clone(),
        })
        .collect()
}

/// Registers every downstream cluster as a user does: a ClusterRegistrationToken upstream,
/// its values saved to a file, and the chart installed downstream with them
/// (`helm install fleet-agent charts/fleet --values values.yaml`).
async fn register_agents(
    upstream: &Cluster,
    downstreams: &[Cluster],
    work: &Path,
) -> anyhow::Result<()> {
    let up = upstream.client.clone();
    let namespace: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": WORKSPACE}}))?;
    Api::<Namespace>::all(up.clone())
        .create(&PostParams::default(), &namespace)
        .await?;
    let group: ClusterGroup = serde_json::from_value(
        serde_json::json!({"metadata": {"name": "default"}, "spec": {"selector": {}}}),
    )?;
    Api::<ClusterGroup>::namespaced(up.clone(), WORKSPACE)
        .create(&PostParams::default(), &group)
        .await?;
    let token: ClusterRegistrationToken = serde_json::from_value(
        serde_json::json!({"metadata": {"name": "e2e-token"}, "spec": {"ttl": "2h"}}),
    )?;
    Api::<ClusterRegistrationToken>::namespaced(up.clone(), WORKSPACE)
        .create(&PostParams::default(), &token)
        .await?;
    let secrets: Api<Secret> = Api::namespaced(up.clone(), WORKSPACE);
    let secret = wait_for(&secrets, "e2e-token", WAIT, |s| {
        s.data.as_ref().is_some_and(|d| d.contains_key("values"))
    })
    .await
    .context("the token's values Secret")?;
    let values = secret
        .data
        .and_then(|d| d.get("values").cloned())
        .context("token values")?;
    let values_file = work.join("values.yaml");
    std::fs::write(&values_file, &values.0)?;
    let started = Instant::now();
    // The first downstream cluster the agent-initiated way: the chart with the token's values.
    let (by_chart, imported) = downstreams.split_at(1.min(downstreams.len()));
    for cluster in by_chart {
        install_chart(
            cluster,
            "fleet-agent",
            &[
                "--values".into(),
                values_file.display().to_string(),
                "--set".into(),
                "image.pullPolicy=Never".into(),
            ],
        )?;
    }
    // The others manager-initiated: a kubeconfig Secret and a Cluster naming it; the
    // controller (a pod) installs the agent downstream.
    for cluster in imported {
        let secret_name = format!("{}-kubeconfig", cluster.name);
        let mut secret: Secret =
            serde_json::from_value(serde_json::json!({"metadata": {"name": secret_name}}))?;
        secret.string_data =
            Some([("value".to_owned(), cluster.kubeconfig_for_pods.clone())].into());
        Api::<Secret>::namespaced(up.clone(), WORKSPACE)
            .create(&PostParams::default(), &secret)
            .await?;
        let imported: FleetCluster = serde_json::from_value(serde_json::json!({
            "metadata": {"name": cluster.name},
            "spec": {"kubeConfigSecret": secret_name},
        }))?;
        Api::<FleetCluster>::namespaced(up.clone(), WORKSPACE)
            .create(&PostParams::default(), &imported)
            .await?;
        say(&format!(
            "Cluster {WORKSPACE}/{} created with kubeConfigSecret {secret_name} (manager-initiated import)",
            cluster.name
        ));
    }
    for cluster in downstreams {
        wait_available(&cluster.client, LOCAL_AGENT.deployment)
            .await
            .with_context(|| format!("the agent of {}", cluster.name))?;
    }
    let clusters: Api<FleetCluster> = Api::namespaced(up, WORKSPACE);
    wait_for_count(
        &clusters,
        "every downstream cluster registered and checked in",
        downstreams.len(),
        WAIT,
        |c| {
            c.status
                .as_ref()
                .is_some_and(|s| s.agent.last_seen.is_some())
        },
    )
    .await?;
    say(&format!(
        "{} downstream agents ({} installed with the chart, {} by the controller's import) registered and checked in ({:.1}s)",
        downstreams.len(),
        by_chart.len(),
        imported.len(),
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}
