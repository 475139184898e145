//! The scenario every provider runs: install the chart as the README says, register the
//! downstream agents (by chart and by import), check the pods, their probes, their Leases and
//! their spread over zones, deploy the example, then the drills ([`super::drills`]) with a
//! git change in flight each time, the HelmOp and the pruning of a path.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use fleet_api::{Cluster as FleetCluster, ClusterGroup, ClusterRegistrationToken, GitRepo};
use fleet_testkit::binaries::{Tool, ensure as ensure_tool};
use fleet_testkit::git::GitHttpServer;
use fleet_testkit::wait_for_count;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::Api;
use kube::api::PostParams;

use super::drills::{Disruption, agent_drill, drain, drill};
use super::inspect::{print_leaders, print_pods, wait_available};
use super::{Cluster, Clusters, SYSTEM_NAMESPACE, say};
use crate::example;

pub const WAIT: Duration = Duration::from_secs(180);
/// The workspace downstream clusters register into, as Fleet's default.
pub const WORKSPACE: &str = "fleet-default";

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
pub const LOCAL_AGENT: Component = Component {
    deployment: "fleet-agent",
    lease: "fleet-agent",
};

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
    let all = install_upstream(&upstream, work).await?;
    let client = upstream.client.clone();

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

/// Installs the chart upstream (every component and the local agent, as pods) and waits
/// until each is Available; returns them.
async fn install_upstream(upstream: &Cluster, work: &Path) -> anyhow::Result<Vec<Component>> {
    let started = Instant::now();
    let ca_file = work.join("upstream-ca.pem");
    std::fs::write(&ca_file, &upstream.ca_pem)?;
    install_chart(
        upstream,
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
    Ok(all)
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

pub fn as_downstreams(clusters: &[Cluster]) -> Vec<example::Downstream> {
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
    let values_file = token_values(&up, work).await?;
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
    for cluster in imported {
        import(&up, cluster).await?;
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

/// The workspace, its ClusterGroup `default` of every cluster, and a ClusterRegistrationToken
/// whose values (what an agent registers with) are written to `values.yaml` in `work`;
/// returns that file.
async fn token_values(up: &kube::Client, work: &Path) -> anyhow::Result<std::path::PathBuf> {
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
    let values_file = work.join("values.yaml");
    fleet_testkit::write_token_values(up, WORKSPACE, "e2e-token", &values_file, WAIT)
        .await
        .context("the token's values")?;
    Ok(values_file)
}

/// Imports `cluster` manager-initiated: a kubeconfig Secret and a Cluster naming it; the
/// controller (a pod) installs the agent downstream.
async fn import(up: &kube::Client, cluster: &Cluster) -> anyhow::Result<()> {
    let secret_name = format!("{}-kubeconfig", cluster.name);
    let mut secret: Secret =
        serde_json::from_value(serde_json::json!({"metadata": {"name": secret_name}}))?;
    secret.string_data = Some([("value".to_owned(), cluster.kubeconfig_for_pods.clone())].into());
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
    Ok(())
}
