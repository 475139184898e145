//! `cargo xtask demo` and `cargo xtask e2e --provider local`: the stack on local control
//! planes, a GitRepo pointing at an example repository (plain manifests, a Helm chart with
//! per-cluster values, kustomize) deployed to every downstream cluster, and leader failovers
//! while a git change is in flight. The demo narrates; e2e runs the same scenario on two
//! downstream clusters, with every check, and fails loudly.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use fleet_api::{Bundle, GitRepo};
use fleet_testkit::git::GitRepoFixture;
use fleet_testkit::{wait_deleted, wait_for};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::PostParams;
use kube::{Api, ResourceExt};

use crate::stack::{NS, Stack};

/// Where the scenario runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Provider {
    /// Local control planes, components started as processes (quick, for development).
    Local,
    /// Local control planes with real nodes (kubelet, containerd): the image and the chart.
    Node,
    /// kind clusters with the image and the umbrella chart (needs Docker and kind).
    Kind,
}

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Leave everything running and print the kubeconfigs (Ctrl-C stops it).
    #[arg(long)]
    keep: bool,
    /// `local`: components as processes; `node`: the image and the chart on real nodes.
    #[arg(long, value_enum, default_value = "local")]
    provider: Provider,
}

#[derive(Debug, clap::Args)]
pub struct E2eArgs {
    #[arg(long, value_enum, default_value = "local")]
    provider: Provider,
}

const WAIT: Duration = Duration::from_secs(120);

fn say(line: &str) {
    println!("==> {line}");
}

pub fn demo(args: &DemoArgs) -> anyhow::Result<()> {
    match args.provider {
        Provider::Local => crate::bench::block_on(run(1, 2, args.keep, false)),
        provider => deployed(provider, args.keep),
    }
}

pub fn e2e(args: &E2eArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    match args.provider {
        Provider::Local => crate::bench::block_on(run(2, 2, false, true))?,
        Provider::Node | Provider::Kind => deployed(args.provider, false)?,
    }
    say(&format!(
        "e2e passed in {:.0}s",
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// The scenario of the stack deployed with the chart, on nodes or kind; with `keep`, left
/// running until Ctrl-C.
fn deployed(provider: Provider, keep: bool) -> anyhow::Result<()> {
    use crate::deployed::{kind::KindClusters, nodes::LocalNodes, scenario};
    if provider == Provider::Node {
        crate::packages::ensure_node_packages()?;
        for tool in fleet_testkit::binaries::Tool::NODE {
            fleet_testkit::binaries::ensure(tool)?;
        }
    }
    let archive = crate::image::build(None)?;
    let work = tempfile::Builder::new().prefix("fleet-rs-e2e-").tempdir()?;
    let result = crate::bench::block_on(async {
        match provider {
            Provider::Kind => {
                let mut clusters = KindClusters::start(&archive.path, 2, work.path()).await?;
                scenario::run(&mut clusters, work.path()).await?;
                scenario::keep_running(&clusters, keep).await
            }
            _ => {
                let mut clusters = LocalNodes::start(&archive.path, 2, work.path()).await?;
                scenario::run(&mut clusters, work.path()).await?;
                scenario::keep_running(&clusters, keep).await
            }
        }
    });
    if result.is_err() {
        eprintln!("logs kept in {}", work.keep().display());
    }
    result
}

/// The example repository: plain manifests, a Helm chart with per-cluster values, kustomize.
fn example_repo() -> anyhow::Result<GitRepoFixture> {
    let repo = GitRepoFixture::new()?;
    repo.commit_files(
        "example apps",
        &[
            ("hello/fleet.yaml", "defaultNamespace: demo\n"),
            ("hello/configmap.yaml", &hello("v1")),
            ("chart/fleet.yaml", "defaultNamespace: demo\nhelm:\n  releaseName: web\n  values:\n    cluster: ${ .ClusterName }\n"),
            ("chart/Chart.yaml", "apiVersion: v2\nname: web\nversion: 0.1.0\n"),
            ("chart/values.yaml", "cluster: unknown\n"),
            (
                "chart/templates/configmap.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-settings\ndata:\n  cluster: {{ .Values.cluster | quote }}\n",
            ),
            ("kustomize/fleet.yaml", "defaultNamespace: demo\n"),
            ("kustomize/kustomization.yaml", "resources:\n  - cm.yaml\nnamePrefix: kustomized-\n"),
            ("kustomize/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  from: kustomize\n"),
        ],
    )?;
    Ok(repo)
}

fn hello(version: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: hello\ndata:\n  version: {version}\n"
    )
}

async fn run(downstreams: usize, replicas: usize, keep: bool, strict: bool) -> anyhow::Result<()> {
    let work = tempfile::Builder::new()
        .prefix("fleet-rs-demo-")
        .tempdir()?;
    let result = scenario(work.path(), downstreams, replicas, keep, strict).await;
    if result.is_err() {
        // The components' logs explain a failure: keep them.
        let kept = work.keep();
        eprintln!("logs kept in {}", kept.display());
    }
    result
}

async fn scenario(
    work: &std::path::Path,
    downstreams: usize,
    replicas: usize,
    keep: bool,
    strict: bool,
) -> anyhow::Result<()> {
    let work_path = work.to_owned();
    let mut stack = Stack::start(&work_path, downstreams, replicas, say).await?;
    for (identity, component, role) in stack.roles().await {
        say(&format!("{component} {identity}: {role}"));
    }
    for (lease, holder) in stack.leaders().await? {
        say(&format!("lease {lease}: held by {holder}"));
    }

    let repo = example_repo()?;
    let up = stack.upstream.client();
    let gitrepo: GitRepo = serde_saphyr::from_str(&format!(
        "apiVersion: fleet.cattle.io/v1alpha1\nkind: GitRepo\nmetadata:\n  name: demo\n  namespace: {NS}\nspec:\n  repo: {}\n  pollingInterval: 2s\n  paths: [hello, chart, kustomize]\n  targets:\n  - clusterGroup: default\n",
        repo.file_url()
    ))?;
    let started = Instant::now();
    Api::<GitRepo>::namespaced(up.clone(), NS)
        .create(&PostParams::default(), &gitrepo)
        .await?;
    say("GitRepo demo created (plain manifests, a Helm chart, kustomize)");
    let gitrepos: Api<GitRepo> = Api::namespaced(up.clone(), NS);
    let synced = wait_for(&gitrepos, "demo", WAIT, |g| {
        g.status.as_ref().is_some_and(|s| s.commit.is_some())
    })
    .await?;
    let commit = synced.status.and_then(|s| s.commit).unwrap_or_default();
    say(&format!(
        "GitRepo demo at commit {} ({:.1}s)",
        &commit[..commit.len().min(8)],
        started.elapsed().as_secs_f64()
    ));
    let bundles: Api<Bundle> = Api::namespaced(up.clone(), NS);
    let mut names: Vec<String> = bundles
        .list(&Default::default())
        .await?
        .items
        .iter()
        .map(|b| b.name_any())
        .collect();
    names.sort();
    ensure!(
        names == ["demo-chart", "demo-hello", "demo-kustomize"],
        "unexpected Bundles {names:?}"
    );
    for name in &names {
        let bundle = wait_for(&bundles, name, WAIT, |b| {
            b.status.as_ref().is_some_and(|s| {
                s.summary.ready == downstreams as i64
                    && s.summary.desired_ready == downstreams as i64
            })
        })
        .await
        .with_context(|| {
            format!(
                "Bundle {name} ready on every cluster; logs in {}",
                work_path.display()
            )
        })?;
        let ready = bundle
            .status
            .and_then(|s| s.display.ready_clusters)
            .unwrap_or_default();
        say(&format!("Bundle {name}: ready clusters {ready}"));
    }
    let gitrepo = wait_for(&gitrepos, "demo", WAIT, |g| {
        g.status.as_ref().is_some_and(|s| {
            s.base.display.ready_bundle_deployments.as_deref()
                == Some(&format!("{0}/{0}", 3 * downstreams))
        })
    })
    .await?;
    say(&format!(
        "GitRepo demo: {} BundleDeployments ready ({:.1}s from creation)",
        gitrepo
            .status
            .and_then(|s| s.base.display.ready_bundle_deployments)
            .unwrap_or_default(),
        started.elapsed().as_secs_f64()
    ));
    for (i, plane) in stack.downstreams.iter().enumerate() {
        let configmaps: Api<ConfigMap> = Api::namespaced(plane.client(), "demo");
        for (name, key, want) in [
            ("hello", "version", "v1".to_owned()),
            ("web-settings", "cluster", String::new()),
            ("kustomized-settings", "from", "kustomize".to_owned()),
        ] {
            let cm = wait_for(&configmaps, name, WAIT, |_| true)
                .await
                .with_context(|| format!("{name} in downstream-{}", i + 1))?;
            let value = cm
                .data
                .as_ref()
                .and_then(|d| d.get(key))
                .cloned()
                .unwrap_or_default();
            if !want.is_empty() {
                ensure!(
                    value == want,
                    "downstream-{}: {name}.{key} = {value:?}, want {want:?}",
                    i + 1
                );
            } else if strict {
                ensure!(
                    value.starts_with("cluster-"),
                    "per-cluster Helm value, got {value:?}"
                );
            }
            say(&format!(
                "downstream-{}: ConfigMap demo/{name} {key}={value}",
                i + 1
            ));
        }
    }

    // Failovers while a change is in flight: the change must still land everywhere.
    let drills: &[(&str, bool)] = if strict {
        &[
            ("fleet-gitops-leader-election-shard", true),
            ("fleet-controller-leader-election-shard", true),
            ("fleet-gitops-leader-election-shard", false),
            ("fleet-controller-leader-election-shard", false),
            ("fleet-helmops-leader-election-shard", true),
            ("fleet-helmops-leader-election-shard", false),
        ]
    } else {
        &[
            ("fleet-gitops-leader-election-shard", true),
            ("fleet-controller-leader-election-shard", false),
        ]
    };
    let mut failovers = Vec::new();
    for (round, (lease, kill)) in drills.iter().enumerate() {
        let version = format!("v{}", round + 2);
        repo.commit_files("change", &[("hello/configmap.yaml", &hello(&version))])?;
        let started = Instant::now();
        let (old, new, took) = stack.failover(lease, *kill).await?;
        say(&format!(
            "failover {lease} ({}): {old} -> {new} in {:.2}s",
            if *kill { "SIGKILL" } else { "SIGTERM" },
            took.as_secs_f64()
        ));
        for (i, plane) in stack.downstreams.iter().enumerate() {
            let configmaps: Api<ConfigMap> = Api::namespaced(plane.client(), "demo");
            wait_for(&configmaps, "hello", WAIT, |c| {
                c.data.as_ref().and_then(|d| d.get("version")) == Some(&version)
            })
            .await
            .with_context(|| {
                format!(
                    "the change in flight reached downstream-{}; logs in {}",
                    i + 1,
                    work_path.display()
                )
            })?;
        }
        say(&format!(
            "change {version} landed on every cluster {:.2}s after the commit",
            started.elapsed().as_secs_f64()
        ));
        failovers.push(format!(
            "{lease} {}: new leader in {:.2}s, change landed in {:.2}s",
            if *kill { "SIGKILL" } else { "SIGTERM" },
            took.as_secs_f64(),
            started.elapsed().as_secs_f64()
        ));
        // Back to full strength for the next drill.
        stack.restart(&old)?;
    }
    for (lease, holder) in stack.leaders().await? {
        ensure!(!holder.is_empty(), "lease {lease} has no holder");
        say(&format!("lease {lease}: held by {holder}"));
    }
    helmop_scenario(&stack).await?;

    // What a user came to see: the objects deployed downstream, and the failovers measured.
    for (i, plane) in stack.downstreams.iter().enumerate() {
        let configmaps: Api<ConfigMap> = Api::namespaced(plane.client(), "demo");
        let mut names: Vec<String> = configmaps
            .list(&Default::default())
            .await?
            .items
            .iter()
            .map(|c| c.name_any())
            .filter(|n| n != "kube-root-ca.crt")
            .collect();
        names.sort();
        ensure!(
            names == ["hello", "helmop-web", "kustomized-settings", "web-settings"],
            "downstream-{}: unexpected ConfigMaps {names:?}",
            i + 1
        );
        say(&format!(
            "deployed on downstream-{}: ConfigMaps demo/{{{}}}",
            i + 1,
            names.join(", ")
        ));
    }
    if strict {
        prune_scenario(&stack, &repo).await?;
    }
    for failover in &failovers {
        say(&format!("failover {failover}"));
    }

    if keep {
        say(&format!(
            "upstream kubeconfig: {}",
            stack.upstream.kubeconfig_path().display()
        ));
        for (i, plane) in stack.downstreams.iter().enumerate() {
            say(&format!(
                "downstream-{} kubeconfig: {}",
                i + 1,
                plane.kubeconfig_path().display()
            ));
        }
        say(&format!(
            "logs: {}; Ctrl-C stops everything",
            work_path.display()
        ));
        tokio::signal::ctrl_c().await?;
    }
    drop(stack);
    Ok(())
}

/// A path removed from the repository: its Bundle is pruned, and its objects are removed
/// from every cluster (BundleDeployments deleted, releases uninstalled by the agents).
async fn prune_scenario(stack: &Stack, repo: &GitRepoFixture) -> anyhow::Result<()> {
    repo.remove("kustomize")?;
    repo.commit("remove the kustomize app")?;
    let started = Instant::now();
    let bundles: Api<Bundle> = Api::namespaced(stack.upstream.client(), NS);
    wait_deleted(&bundles, "demo-kustomize", WAIT)
        .await
        .context("Bundle demo-kustomize pruned")?;
    for (i, plane) in stack.downstreams.iter().enumerate() {
        let configmaps: Api<ConfigMap> = Api::namespaced(plane.client(), "demo");
        wait_deleted(&configmaps, "kustomized-settings", WAIT)
            .await
            .with_context(|| format!("kustomized-settings removed from downstream-{}", i + 1))?;
    }
    say(&format!(
        "path kustomize removed from git: Bundle pruned and its objects gone from every cluster in {:.1}s",
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// A HelmOp deploys a chart from a Helm repository (packaged and indexed with the pinned
/// helm, served over HTTP) to every cluster.
async fn helmop_scenario(stack: &Stack) -> anyhow::Result<()> {
    let repo = fleet_testkit::helm_repo::HelmRepoDir::new()?;
    let server = fleet_testkit::file_server::FileServer::start(&repo.root()).await?;
    repo.publish(
        "web",
        "1.2.3",
        &[(
            "cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: helmop-web\ndata:\n  chart: {{ .Chart.Version | quote }}\n",
        )],
        &server.url(),
    )?;
    let helmop: fleet_api::HelmOp = serde_saphyr::from_str(&format!(
        "apiVersion: fleet.cattle.io/v1alpha1\nkind: HelmOp\nmetadata:\n  name: greeter\n  namespace: {NS}\nspec:\n  defaultNamespace: demo\n  helm:\n    repo: {}\n    chart: web\n    version: ^1.0\n  targets:\n  - clusterGroup: default\n",
        server.url()
    ))?;
    let started = Instant::now();
    Api::<fleet_api::HelmOp>::namespaced(stack.upstream.client(), NS)
        .create(&PostParams::default(), &helmop)
        .await?;
    for (i, plane) in stack.downstreams.iter().enumerate() {
        let configmaps: Api<ConfigMap> = Api::namespaced(plane.client(), "demo");
        let cm = wait_for(&configmaps, "helmop-web", WAIT, |_| true)
            .await
            .with_context(|| format!("the HelmOp's chart on downstream-{}", i + 1))?;
        let chart = cm
            .data
            .and_then(|d| d.get("chart").cloned())
            .unwrap_or_default();
        ensure!(chart == "1.2.3", "chart version {chart}");
        say(&format!(
            "downstream-{}: HelmOp greeter deployed chart web {chart} from the Helm repository",
            i + 1
        ));
    }
    say(&format!(
        "HelmOp greeter deployed everywhere in {:.1}s",
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}
