//! `cargo xtask demo` and `cargo xtask e2e --provider local`: the stack on local control
//! planes, a GitRepo pointing at an example repository (plain manifests, a Helm chart with
//! per-cluster values, kustomize) deployed to every downstream cluster, and leader failovers
//! while a git change is in flight. The demo narrates; e2e runs the same scenario on two
//! downstream clusters, with every check, and fails loudly.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use fleet_api::{Bundle, GitRepo};
use fleet_election::shards::assign::shard_of;
use fleet_testkit::wait_for;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::PostParams;
use kube::{Api, ResourceExt};

use crate::example;
use crate::stack::{GITJOB_SHARDS, NS, Stack, gitjob_shard_lease};

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
            fleet_testkit::binaries::ensure(*tool)?;
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
    work: &Path,
    downstreams: usize,
    replicas: usize,
    keep: bool,
    strict: bool,
) -> anyhow::Result<()> {
    let mut stack = Stack::start(work, downstreams, replicas, say).await?;
    let start_transitions = say_roles(&stack).await?;
    let repo = example::repo()?;
    let up = stack.upstream.client();
    deploy_gitrepo(&stack, &repo, work).await?;
    let clusters = stack.downstream_clusters();
    example::check_deployed(&clusters, "v1", strict).await?;

    let mut failovers = drill_components(&mut stack, &repo, strict, work).await?;
    let role_drills = failovers.len();
    // The agents: the reason multi-replica agents exist. The demo shows one (SIGKILL).
    let agent_drills: &[bool] = if strict { &[true, false] } else { &[true] };
    for (i, kill) in agent_drills.iter().enumerate() {
        let version = format!("v{}", role_drills + i + 2);
        let line = crate::agent_failover::drill(&mut stack, &repo, 1, &version, *kill)
            .await
            .with_context(|| format!("agent failover; logs in {}", work.display()))?;
        failovers.push(line);
    }
    say_shard_map(&stack).await?;
    let leaders = every_lease_held(&stack).await?;
    say_transitions(
        role_transitions(&leaders) - start_transitions,
        failovers.len(),
    );
    example::helmop(&up, NS, &clusters, std::net::Ipv4Addr::LOCALHOST.into()).await?;

    // What a user came to see: the objects deployed downstream, and the failovers measured.
    say_deployed(&stack).await?;
    if strict {
        example::prune(&up, NS, &clusters, &repo).await?;
    }
    for failover in &failovers {
        say(&format!("failover {failover}"));
    }
    if keep {
        keep_running(&stack, work).await?;
    }
    drop(stack);
    Ok(())
}

/// Says which replica holds which role, Lease and gitjob shard; returns the role Leases'
/// changes of holder so far.
async fn say_roles(stack: &Stack) -> anyhow::Result<i32> {
    for (identity, component, role) in stack.roles().await {
        say(&format!("{component} {identity}: {role}"));
    }
    let leaders = stack.leaders().await?;
    for lease in &leaders {
        say(&format!("lease {}: held by {}", lease.lease, lease.holder));
    }
    say_shard_map(stack).await?;
    Ok(role_transitions(&leaders))
}

/// Creates the GitRepo `demo` on `repo` and waits until its three Bundles are ready on every
/// downstream cluster.
async fn deploy_gitrepo(
    stack: &Stack,
    repo: &fleet_testkit::git::GitRepoFixture,
    work: &Path,
) -> anyhow::Result<()> {
    let up = stack.upstream.client();
    let downstreams = stack.downstreams.len();
    let gitrepo: GitRepo = serde_saphyr::from_str(&format!(
        "apiVersion: fleet.cattle.io/v1alpha1\nkind: GitRepo\nmetadata:\n  name: demo\n  namespace: {NS}\nspec:\n  repo: {}\n  pollingInterval: 2s\n  paths: [hello, chart, kustomize]\n  targets:\n  - clusterGroup: default\n",
        repo.file_url()
    ))?;
    let started = Instant::now();
    let gitrepos: Api<GitRepo> = Api::namespaced(up.clone(), NS);
    gitrepos.create(&PostParams::default(), &gitrepo).await?;
    say("GitRepo demo created (plain manifests, a Helm chart, kustomize)");
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
    let bundles: Api<Bundle> = Api::namespaced(up, NS);
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
                work.display()
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
    Ok(())
}

/// Failovers of the upstream components while a change is in flight: the change must still
/// land everywhere. gitjob's drill stops the holder of the demo GitRepo's shard. Returns a
/// line per drill.
async fn drill_components(
    stack: &mut Stack,
    repo: &fleet_testkit::git::GitRepoFixture,
    strict: bool,
    work: &Path,
) -> anyhow::Result<Vec<String>> {
    let gitops = gitjob_shard_lease(shard_of(&format!("{NS}/demo"), GITJOB_SHARDS));
    let gitops = gitops.as_str();
    let drills: &[(&str, bool)] = if strict {
        &[
            (gitops, true),
            ("fleet-controller-leader-election-shard", true),
            (gitops, false),
            ("fleet-controller-leader-election-shard", false),
            ("fleet-helmops-leader-election-shard", true),
            ("fleet-helmops-leader-election-shard", false),
        ]
    } else {
        &[
            (gitops, true),
            ("fleet-controller-leader-election-shard", false),
        ]
    };
    let clusters = stack.downstream_clusters();
    let mut failovers = Vec::new();
    for (round, (lease, kill)) in drills.iter().enumerate() {
        let version = format!("v{}", round + 2);
        repo.commit_files(
            "change",
            &[("hello/configmap.yaml", &example::hello(&version))],
        )?;
        let started = Instant::now();
        let (old, new, took) = stack.failover(lease, *kill).await?;
        let signal = if *kill { "SIGKILL" } else { "SIGTERM" };
        say(&format!(
            "failover {lease} ({signal}): {old} -> {new} in {:.2}s",
            took.as_secs_f64()
        ));
        example::wait_version(&clusters, &version)
            .await
            .with_context(|| format!("the change in flight; logs in {}", work.display()))?;
        let landed = started.elapsed().as_secs_f64();
        say(&format!(
            "change {version} landed on every cluster {landed:.2}s after the commit"
        ));
        failovers.push(format!(
            "{lease} {signal}: new leader in {:.2}s, change landed in {landed:.2}s",
            took.as_secs_f64(),
        ));
        // Back to full strength for the next drill.
        stack.restart(&old)?;
    }
    Ok(failovers)
}

/// Waits until every Lease has a holder (a role may be between holders right after the
/// drills, a hand-over: wait, do not read) and says who holds each.
async fn every_lease_held(stack: &Stack) -> anyhow::Result<Vec<crate::stack::LeaseHolder>> {
    let leaders = fleet_testkit::eventually(
        "every Lease held",
        WAIT,
        Duration::from_millis(200),
        || async {
            let leaders = stack.leaders().await.map_err(|e| e.to_string())?;
            match leaders.iter().find(|l| l.holder.is_empty()) {
                Some(l) => Err(format!("lease {} has no holder", l.lease)),
                None => Ok(leaders),
            }
        },
    )
    .await?;
    for lease in &leaders {
        say(&format!(
            "lease {}: held by {} ({} changes of holder)",
            lease.lease, lease.holder, lease.transitions
        ));
    }
    Ok(leaders)
}

/// Checks and says which ConfigMaps every downstream cluster has in `demo`.
async fn say_deployed(stack: &Stack) -> anyhow::Result<()> {
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
    Ok(())
}

/// Prints the kubeconfigs and logs, and waits for Ctrl-C.
async fn keep_running(stack: &Stack, work: &Path) -> anyhow::Result<()> {
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
        work.display()
    ));
    tokio::signal::ctrl_c().await?;
    Ok(())
}

/// Prints gitjob's shard map: which replica holds each shard's Lease.
async fn say_shard_map(stack: &Stack) -> anyhow::Result<()> {
    let map = stack.gitjob_shard_map().await?;
    let owners: Vec<String> = map
        .iter()
        .map(|(shard, holder)| {
            let holder = if holder.is_empty() { "(none)" } else { holder };
            format!("{shard} -> {holder}")
        })
        .collect();
    say(&format!(
        "gitjob shard map ({GITJOB_SHARDS} shards): {}",
        owners.join(", ")
    ));
    Ok(())
}

/// Changes of holder of the role Leases (one per component and agent role). gitjob's shard
/// Leases move on purpose when replicas come and go (rebalancing), and member Leases are never
/// contested: neither says anything about load.
fn role_transitions(leases: &[crate::stack::LeaseHolder]) -> i32 {
    leases
        .iter()
        .filter(|l| !l.lease.contains("-shard-") && !l.lease.contains("-member-"))
        .map(|l| l.transitions)
        .sum()
}

/// Says how often leadership changed during the drills, against how often the drills made it
/// change: the demo's short Lease timings (4s/3s/0.5s, for failovers quick to watch) lose
/// leadership on a machine too loaded to renew within 3 s, and the demo says so rather than
/// hide it. The chart's defaults (15s/10s/2s, as Fleet's) hold under load.
fn say_transitions(changes: i32, drills: usize) {
    // Each drill moves one role Lease (an agent drill both of the agent's roles at most);
    // anything beyond that is leadership lost to load.
    let expected = i32::try_from(drills * 2).unwrap_or(i32::MAX);
    if changes > expected {
        say(&format!(
            "role Leases changed holder {changes} times during the drills (they account for at most \
             {expected}): this machine was too loaded for the demo's 4s/3s/0.5s Lease timings; \
             the chart's defaults (15s/10s/2s) are meant for such machines"
        ));
    } else {
        say(&format!(
            "role Leases changed holder {changes} times during the drills (they account for at most \
             {expected}): no leadership lost to load"
        ));
    }
}
