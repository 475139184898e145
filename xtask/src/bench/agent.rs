//! `cargo xtask bench agent`: release fleet-controller and fleet-agent on two local control
//! planes (upstream, downstream), the agent registered with a token. Measures the time from a
//! Bundle change to its BundleDeployment reporting the new deploymentID applied (a
//! 10-resource bundle; p50/p95), the agent's RSS idle and with 100 BundleDeployments, and the
//! read/write split: the deploying replica's CPU while the 100 deployed releases are scanned
//! for drift, first alone (it holds both roles), then with a second replica that took the
//! monitoring role.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use fleet_api::{Bundle, BundleDeployment, Cluster};
use fleet_testkit::binaries::{Tool, ensure};
use fleet_testkit::{
    ControlPlane, Lifetime, ManagedProcess, apply_crds, ports, wait_for, wait_for_count,
};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};

use super::{block_on, build_release_bin, percentile, requests, rss_kib};

const NS: &str = "fleet-default";
const WAIT: Duration = Duration::from_secs(180);

#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// Changes applied and timed.
    #[arg(long, default_value_t = 10)]
    trials: usize,
    /// BundleDeployments for the loaded RSS and the drift scans.
    #[arg(long, default_value_t = 100)]
    deployments: usize,
    /// The agents' drift interval (how often each release is scanned).
    #[arg(long, default_value = "5s", value_parser = fleet_api::duration::parse_go_duration)]
    drift_interval: Duration,
    /// How long CPU is measured, with and without the split.
    #[arg(long, default_value = "30s", value_parser = fleet_api::duration::parse_go_duration)]
    window: Duration,
}

pub fn run(args: &AgentArgs) -> anyhow::Result<()> {
    let controller = build_release_bin("fleet-controller", "fleet-controller")?;
    let agent = build_release_bin("fleet-agent", "fleet-agent")?;
    block_on(bench(args, &controller, &agent))
}

fn bundle(name: &str, resources: usize, version: usize) -> anyhow::Result<Bundle> {
    let resources: Vec<serde_json::Value> = (0..resources)
        .map(|i| {
            serde_json::json!({
                "name": format!("cm-{i}.yaml"),
                "content": format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}-{i}\ndata:\n  version: \"{version}\"\n"),
            })
        })
        .collect();
    Ok(serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {"defaultNamespace": "bench", "targets": [{"clusterGroup": "default"}], "resources": resources},
    }))?)
}

fn applied(bd: &BundleDeployment) -> bool {
    bd.spec.deployment_id.is_some()
        && bd
            .status
            .as_ref()
            .and_then(|s| s.applied_deployment_id.as_ref())
            == bd.spec.deployment_id.as_ref()
}

async fn bench(args: &AgentArgs, controller_bin: &Path, agent_bin: &Path) -> anyhow::Result<()> {
    let work = tempfile::tempdir()?;
    let upstream = ControlPlane::start().await?;
    let downstream = ControlPlane::builder().name("downstream").start().await?;
    let up = upstream.client();
    apply_crds(&up, &fleet_api::crds()).await?;
    let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": NS}}))?;
    Api::<Namespace>::all(up.clone())
        .create(&PostParams::default(), &ns)
        .await?;
    let _controller = spawn_controller(controller_bin, &upstream, work.path())?;
    let values = token_values(&up, work.path()).await?;
    let replica = Replica {
        binary: agent_bin,
        downstream: &downstream,
        values: &values,
        drift_interval: args.drift_interval,
        dir: work.path(),
    };
    let agent = replica.spawn("agent-a", ports::free_port()?)?;
    let pid = agent.pid().context("agent pid")?;
    let cluster = registered(&up).await.with_context(|| agent.log_tail(20))?;
    let bd_namespace = fleet_render::deployments::deployment_namespace(&cluster);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_rss = rss_kib(pid, "VmRSS:");

    let group: fleet_api::ClusterGroup = serde_json::from_value(
        serde_json::json!({"metadata": {"name": "default"}, "spec": {"selector": {}}}),
    )?;
    Api::<fleet_api::ClusterGroup>::namespaced(up.clone(), NS)
        .create(&PostParams::default(), &group)
        .await?;
    let bundles: Api<Bundle> = Api::namespaced(up.clone(), NS);
    let bds: Api<BundleDeployment> = Api::namespaced(up.clone(), &bd_namespace);
    let samples = change_latencies(&bundles, &bds, args.trials).await?;
    load(&bundles, &bds, args.deployments)
        .await
        .with_context(|| agent.log_tail(20))?;
    let loaded_rss = rss_kib(pid, "VmRSS:");
    let peak_rss = rss_kib(pid, "VmHWM:");
    let split = split_cpu(args, &replica, &agent).await?;

    let mib = |kib: Option<u64>| {
        kib.map_or_else(
            || "unknown".to_owned(),
            |k| format!("{:.1} MiB", k as f64 / 1024.0),
        )
    };
    println!(
        "agent benchmark (release fleet-controller and fleet-agent, helm {}, two local control planes)",
        Tool::Helm.version()?
    );
    println!(
        "bundle change → deploymentID applied and reported (10 resources): n={} p50={:.0}ms p95={:.0}ms max={:.0}ms",
        samples.len(),
        percentile(&samples, 50.0),
        percentile(&samples, 95.0),
        samples.last().copied().unwrap_or_default()
    );
    println!("agent RSS idle (registered, no bundles): {}", mib(idle_rss));
    println!(
        "agent RSS with {} BundleDeployments: {} (peak {})",
        args.deployments,
        mib(loaded_rss),
        mib(peak_rss)
    );
    split.print(args);
    Ok(())
}

/// The release fleet-controller on `upstream`, logging into `dir`.
fn spawn_controller(
    binary: &Path,
    upstream: &ControlPlane,
    dir: &Path,
) -> anyhow::Result<ManagedProcess> {
    let port = ports::free_port()?;
    let mut cmd = std::process::Command::new(binary);
    cmd.args([
        format!("--kubeconfig={}", upstream.kubeconfig_path().display()),
        "--namespace=default".to_owned(),
        format!("--metrics-bind-address=127.0.0.1:{port}"),
        format!("--health-bind-address=127.0.0.1:{port}"),
        format!("--api-server-url={}", upstream.server()),
        format!("--api-server-ca-file={}", upstream.ca_cert_path().display()),
    ]);
    Ok(ManagedProcess::spawn(
        "controller",
        cmd,
        &dir.join("controller.log"),
        Lifetime::Owned,
    )?)
}

/// A ClusterRegistrationToken, and the agent values the controller answers it with, written
/// to `values.json` in `dir`; returns that file.
async fn token_values(up: &Client, dir: &Path) -> anyhow::Result<PathBuf> {
    let token: fleet_api::ClusterRegistrationToken = serde_json::from_value(
        serde_json::json!({"metadata": {"name": "token"}, "spec": {"ttl": "1h"}}),
    )?;
    Api::<fleet_api::ClusterRegistrationToken>::namespaced(up.clone(), NS)
        .create(&PostParams::default(), &token)
        .await?;
    let path = dir.join("values.json");
    fleet_testkit::write_token_values(up, NS, "token", &path, WAIT).await?;
    Ok(path)
}

/// Creates the Bundle `timed` (10 resources), then changes it `trials` times: the time from
/// each change to its new deploymentID applied and reported, in ms, sorted.
async fn change_latencies(
    bundles: &Api<Bundle>,
    bds: &Api<BundleDeployment>,
    trials: usize,
) -> anyhow::Result<Vec<f64>> {
    bundles
        .create(&PostParams::default(), &bundle("timed", 10, 0)?)
        .await?;
    wait_for(bds, "timed", WAIT, applied).await?;
    let mut samples = Vec::with_capacity(trials);
    for trial in 1..=trials {
        let before = bds.get("timed").await?.spec.deployment_id;
        let next = bundle("timed", 10, trial)?;
        let started = Instant::now();
        bundles
            .patch(
                "timed",
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"spec": {"resources": next.spec.resources}})),
            )
            .await?;
        wait_for(bds, "timed", WAIT, |bd| {
            bd.spec.deployment_id != before && applied(bd)
        })
        .await?;
        samples.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    samples.sort_by(f64::total_cmp);
    Ok(samples)
}

/// Adds one-resource Bundles until `deployments` BundleDeployments exist (with `timed`), and
/// waits (at most 900 s) until all of them are applied.
async fn load(
    bundles: &Api<Bundle>,
    bds: &Api<BundleDeployment>,
    deployments: usize,
) -> anyhow::Result<()> {
    for i in 1..deployments {
        bundles
            .create(
                &PostParams::default(),
                &bundle(&format!("load-{i:03}"), 1, 0)?,
            )
            .await?;
    }
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let done = bds
            .list(&Default::default())
            .await?
            .items
            .iter()
            .filter(|bd| applied(bd))
            .count();
        if done >= deployments {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("only {done}/{deployments} BundleDeployments applied");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// How an agent replica is started.
struct Replica<'a> {
    binary: &'a Path,
    downstream: &'a ControlPlane,
    values: &'a Path,
    drift_interval: Duration,
    dir: &'a Path,
}

impl Replica<'_> {
    fn spawn(&self, name: &str, port: u16) -> anyhow::Result<ManagedProcess> {
        let mut cmd = std::process::Command::new(self.binary);
        cmd.args([
            format!(
                "--kubeconfig={}",
                self.downstream.kubeconfig_path().display()
            ),
            "--namespace=default".to_owned(),
            format!("--metrics-bind-address=127.0.0.1:{port}"),
            format!("--health-bind-address=127.0.0.1:{port}"),
            format!("--registration-values={}", self.values.display()),
            format!("--election-identity={name}"),
            format!("--drift-interval={}s", self.drift_interval.as_secs_f64()),
            format!("--helm={}", ensure(Tool::Helm)?.display()),
            format!("--kustomize={}", ensure(Tool::Kustomize)?.display()),
        ])
        .env("RUST_LOG", "warn");
        Ok(ManagedProcess::spawn(
            name,
            cmd,
            &self.dir.join(format!("{name}.log")),
            Lifetime::Owned,
        )?)
    }
}

/// CPU seconds `pid` uses over `window`.
async fn cpu_over(pid: u32, window: Duration) -> anyhow::Result<f64> {
    let cpu = || requests::cpu_seconds(pid).with_context(|| format!("the CPU time of {pid}"));
    let before = cpu()?;
    tokio::time::sleep(window).await;
    Ok(cpu()? - before)
}

/// The read/write split measured.
struct Split {
    alone: f64,
    deploying: f64,
    monitoring: f64,
}

impl Split {
    fn print(&self, args: &AgentArgs) {
        let window = args.window.as_secs_f64();
        println!(
            "drift scans of {} BundleDeployments every {:?}, CPU over {window:.0}s:",
            args.deployments, args.drift_interval
        );
        println!(
            "  one replica (deploying and monitoring): {:.2} CPU-s ({:.1}% of a core)",
            self.alone,
            self.alone / window * 100.0
        );
        println!(
            "  two replicas: deploying {:.2} CPU-s, monitoring {:.2} CPU-s",
            self.deploying, self.monitoring
        );
        println!(
            "  deploying replica's CPU with the split / without: {:.2} (target <= 0.50)",
            self.deploying / self.alone.max(f64::EPSILON)
        );
    }
}

/// The first replica's CPU alone (both roles) over the window, then a second replica joins
/// and takes the monitoring role, and both replicas' CPU over the same window. Each window
/// starts after two drift intervals, so the scans are in their steady state.
async fn split_cpu(
    args: &AgentArgs,
    replica: &Replica<'_>,
    first: &ManagedProcess,
) -> anyhow::Result<Split> {
    let settle = args.drift_interval * 2 + Duration::from_secs(2);
    let first_pid = first.pid().context("agent pid")?;
    tokio::time::sleep(settle).await;
    let alone = cpu_over(first_pid, args.window).await?;
    let port = ports::free_port()?;
    let second = replica.spawn("agent-b", port)?;
    fleet_testkit::wait_leases(port, &[("fleet-agent-monitor", "leader")], WAIT)
        .await
        .with_context(|| second.log_tail(20))?;
    tokio::time::sleep(settle).await;
    let second_pid = second.pid().context("agent pid")?;
    let (deploying, monitoring) = tokio::try_join!(
        cpu_over(first_pid, args.window),
        cpu_over(second_pid, args.window)
    )?;
    Ok(Split {
        alone,
        deploying,
        monitoring,
    })
}

/// The Cluster the agent registered, once it has checked in.
async fn registered(up: &Client) -> anyhow::Result<Cluster> {
    let clusters: Api<Cluster> = Api::namespaced(up.clone(), NS);
    let mut registered =
        wait_for_count(&clusters, "the agent registered", 1, WAIT, |c: &Cluster| {
            c.status
                .as_ref()
                .is_some_and(|s| s.agent.last_seen.is_some() && s.namespace.is_some())
        })
        .await?;
    registered.pop().context("a registered cluster")
}
