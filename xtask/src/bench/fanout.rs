//! `cargo xtask bench fanout --clusters N --bundles M`: the release fleet-controller on a local
//! control plane with N Clusters; M Bundles targeting all of them are created at once and the
//! time until all N x M BundleDeployments exist is measured (a watch counts them). In the same
//! run, a plain client creates N x M BundleDeployments with the same concurrency: the raw
//! create rate of this control plane, the physical limit. Prints both rates and their ratio,
//! the controller's peak RSS, and the writes of an idle resync. With `--replicas R --shards S`
//! the controller runs as R replicas sharing S dynamic shards (peak RSS per replica); with
//! `--kill-one` one replica is SIGKILLed `--kill-at` percent into the fan-out (half by
//! default): the time until its shards are owned again, and what the outage paused
//! ([`outage`]). Then every Bundle changes at once (an update wave):
//! the time until every BundleDeployment deploys it, and the peak RSS during it, when the
//! caches are full. With several replicas, the same fleet is first measured with one leader
//! on a control plane of its own, and each replica's memory is printed as a share of that
//! leader's ([`baseline`]).

mod baseline;
mod counting;
mod outage;
mod raw;
mod replicas;
mod report;
mod update;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use fleet_api::{Bundle, Cluster, ClusterGroup};
use fleet_testkit::{ControlPlane, apply_crds, wait_for_count};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client};

use super::{block_on, build_release_bin, requests};
use counting::{Seen, eventually_rolled_up, rolled_up, seen_until, watch_managed};
use outage::{Kill, Outage};
use replicas::{Replica, cpu_of, cpu_used, metric_sum, rss_of};
use report::{FanOut, Memory, Report};

const NS: &str = "fleet-default";

#[derive(Debug, Clone, clap::Args)]
pub struct FanoutArgs {
    /// Clusters.
    #[arg(long, default_value_t = 1000)]
    clusters: usize,
    /// Bundles, each targeting every cluster.
    #[arg(long, default_value_t = 1)]
    bundles: usize,
    /// Writes in flight, for the controller (per Bundle) and the raw client alike.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Controller replicas.
    #[arg(long, default_value_t = 1)]
    replicas: usize,
    /// Dynamic shards shared by the replicas (0: one leader).
    #[arg(long, default_value_t = 0)]
    shards: u32,
    /// SIGKILL one replica when `--kill-at` percent of the BundleDeployments exist.
    #[arg(long)]
    kill_one: bool,
    /// With `--kill-one`: how far into the fan-out, in percent of its BundleDeployments.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u8).range(1..100))]
    kill_at: u8,
    /// The size of each Bundle's manifest in KiB (a ConfigMap's data); 0: a bare ConfigMap.
    /// Bundles hold their resources: in real fleets, the largest objects a controller caches.
    #[arg(long, default_value_t = 0)]
    resource_kib: usize,
    /// The size of each Bundle's Helm values in KiB (one map of short strings); 0: none.
    /// Every BundleDeployment carries its target's values in its options.
    #[arg(long, default_value_t = 0)]
    values_kib: usize,
    /// With several replicas: skip the one-leader run their memory and time are compared with.
    #[arg(long)]
    no_baseline: bool,
}

impl FanoutArgs {
    /// The run the replicas are compared with: the same fleet, one leader. None with one
    /// replica, `--kill-one` (a kill changes what is measured) or `--no-baseline`.
    fn baseline(&self) -> Option<Self> {
        (self.replicas > 1 && !self.kill_one && !self.no_baseline).then(|| Self {
            replicas: 1,
            shards: 0,
            ..self.clone()
        })
    }
}

pub fn run(args: &FanoutArgs) -> anyhow::Result<()> {
    let binary = build_release_bin("fleet-controller", "fleet-controller")?;
    let logs = std::env::var_os("FANOUT_KEEP_LOG").map(std::path::PathBuf::from);
    block_on(async {
        let leader = match args.baseline() {
            Some(one) => {
                println!(
                    "the baseline: the same fleet with one leader, on a control plane of its own"
                );
                let report = bench(&one, &binary, None).await?;
                report.print();
                println!();
                Some(baseline::Measured::of(&report))
            }
            None => None,
        };
        let report = bench(args, &binary, logs.as_deref()).await?;
        report.print();
        if let Some(leader) = leader {
            println!("the replicas against the one leader (measured in this run):");
            for line in baseline::lines(&leader, &baseline::Measured::of(&report)) {
                println!("  {line}");
            }
        }
        Ok(())
    })
}

async fn create_namespace(client: &Client, name: &str) -> anyhow::Result<()> {
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await?;
    Ok(())
}

/// Creates `objects` with `concurrency` requests in flight.
async fn create_all<K>(api: &Api<K>, objects: Vec<K>, concurrency: usize) -> anyhow::Result<()>
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    futures::stream::iter(objects)
        .map(|o| async move { api.create(&PostParams::default(), &o).await.map(|_| ()) })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// One fan-out, on a control plane of its own; the replicas' and the API server's logs are
/// copied into `logs`.
async fn bench(args: &FanoutArgs, binary: &Path, logs: Option<&Path>) -> anyhow::Result<Report> {
    let work = tempfile::tempdir()?;
    let plane = ControlPlane::start().await?;
    let client = plane.client();
    apply_crds(&client, &fleet_api::crds()).await?;
    create_namespace(&client, NS).await?;
    let total = args.clusters * args.bundles;
    let raw = raw::rates(&client, total, args.concurrency, &options(args)).await?;
    seed_clusters(&client, args).await?;
    let mut replicas = replicas::start(binary, &plane, work.path(), args).await?;
    // Wait until the controller has given every cluster its namespace.
    let cluster_api: Api<Cluster> = Api::namespaced(client.clone(), NS);
    wait_for_count(
        &cluster_api,
        "every cluster with its namespace",
        args.clusters,
        Duration::from_secs(600),
        |c: &Cluster| c.status.as_ref().is_some_and(|s| s.namespace.is_some()),
    )
    .await
    .with_context(|| replicas[0].process.log_tail(20))?;

    // What the replicas hold before the fan-out (clusters cached and rolled up).
    let mut rss_before = rss_of(&replicas, "VmRSS:");
    let started = Instant::now();
    let fan_out = fan_out(&client, &mut replicas, args).await?;
    if fan_out.kill.is_some() {
        // The first replica was killed: the others are measured.
        rss_before.remove(0);
    }
    // The status follows: every Cluster's summary counts its BundleDeployments.
    let statuses = eventually_rolled_up(&cluster_api, args.bundles, args.clusters)
        .await
        .map(|()| started.elapsed())
        .map_err(|e| e.to_string());
    let idle_writes = idle_resync_writes(&client, &replicas, args.bundles).await?;
    let memory = Memory {
        before: rss_before,
        peak: rss_of(&replicas, "VmHWM:"),
        after: rss_of(&replicas, "VmRSS:"),
        file_backed: rss_of(&replicas, "RssFile:"),
    };
    let update = update::update_all(&client, &replicas, args, total).await?;
    let report = Report {
        server: plane.server().to_string(),
        settings: format!(
            "clusters={} bundles={} bundle deployments={total} concurrency={} replicas={} shards={} resource KiB={} values KiB={}",
            args.clusters,
            args.bundles,
            args.concurrency,
            args.replicas,
            args.shards,
            args.resource_kib,
            args.values_kib
        ),
        total,
        raw,
        fan_out,
        memory,
        statuses,
        rolled_up: (rolled_up(&cluster_api, args.bundles).await?, args.clusters),
        idle_writes,
        update,
    };
    if let Some(dir) = logs {
        keep_logs(&plane, work.path(), dir, args.replicas.max(1))?;
    }
    Ok(report)
}

/// The Clusters, all labelled `env: bench`, and the ClusterGroup `default` of them all.
async fn seed_clusters(client: &Client, args: &FanoutArgs) -> anyhow::Result<()> {
    let clusters: Vec<Cluster> = (0..args.clusters)
        .map(|i| serde_json::from_value(serde_json::json!({"metadata": {"name": format!("c{i:05}"), "labels": {"env": "bench"}}, "spec": {}})))
        .collect::<Result<_, _>>()?;
    create_all(
        &Api::<Cluster>::namespaced(client.clone(), NS),
        clusters,
        args.concurrency,
    )
    .await
    .context("creating the Clusters")?;
    let group: ClusterGroup = serde_json::from_value(
        serde_json::json!({"metadata": {"name": "default"}, "spec": {"selector": {}}}),
    )?;
    Api::<ClusterGroup>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &group)
        .await
        .context("creating the ClusterGroup")?;
    Ok(())
}

/// Creates the Bundles and waits until every BundleDeployment exists (a watch counts them);
/// with `--kill-one`, kills the first replica `--kill-at` percent into it and waits until its
/// shards are owned again.
async fn fan_out(
    client: &Client,
    replicas: &mut Vec<Replica>,
    args: &FanoutArgs,
) -> anyhow::Result<FanOut> {
    let total = args.clusters * args.bundles;
    let mut events = watch_managed(client).await?;
    let bundle_api: Api<Bundle> = Api::namespaced(client.clone(), NS);
    let requests_before = requests::requests(client, "fleet.cattle.io").await?;
    let cpu_before = cpu_of(replicas);
    let options = options(args);
    let started = Instant::now();
    for i in 0..args.bundles {
        let mut spec = options.clone();
        spec["targets"] = serde_json::json!([{"clusterGroup": "default"}]);
        spec["resources"] = resources(args.resource_kib, 1);
        let bundle: Bundle = serde_json::from_value(
            serde_json::json!({"metadata": {"name": bundle_name(i)}, "spec": spec}),
        )?;
        bundle_api
            .create(&PostParams::default(), &bundle)
            .await
            .context("creating a Bundle")?;
    }
    let mut seen = Seen::new();
    let mut kill = None;
    if args.kill_one && replicas.len() > 1 {
        let at_share = total * usize::from(args.kill_at) / 100;
        seen_until(&mut events, &mut seen, at_share, |_| true).await?;
        // The watch goes on counting (and timing) while the shards wait for an owner.
        let (killed, all_seen) = futures::join!(
            kill_first(replicas, args.shards),
            seen_until(&mut events, &mut seen, total, |_| true)
        );
        kill = Some(killed?);
        all_seen?;
    } else {
        seen_until(&mut events, &mut seen, total, |_| true).await?;
    }
    // Until the last BundleDeployment appeared (with `--kill-one`, the wait for the killed
    // replica's shards may end later).
    let elapsed = seen.values().map(|appeared| appeared.at).max().map_or_else(
        || started.elapsed(),
        |last| last.saturating_duration_since(started),
    );
    let outage = kill
        .clone()
        .filter(|k| k.of > 0)
        .map(|k| Outage::of(&seen, k, started));
    let requests_after = requests::requests(client, "fleet.cattle.io").await?;
    Ok(FanOut {
        elapsed,
        requests: requests::delta(&requests_before, &requests_after),
        extra_writes: bd_writes(&requests_before, &requests_after) - total as f64,
        cpu: cpu_used(&cpu_before, &cpu_of(replicas)),
        kill,
        outage,
    })
}

/// SIGKILLs the first replica and waits until its shards (with `shards` dynamic ones) are
/// owned again, or without shards until one of the others leads.
async fn kill_first(replicas: &mut Vec<Replica>, shards: u32) -> anyhow::Result<Kill> {
    let port = replicas[0].port;
    let held = if shards > 0 {
        fleet_testkit::shards_held(port)
            .await
            .map_err(|e| anyhow::anyhow!("the shards of the replica to kill: {e}"))?
    } else {
        Vec::new()
    };
    let led = fleet_testkit::http_get(port, "/readyz")
        .await
        .context("the role of the replica to kill")?
        .contains("\"role\":\"leader\"");
    let (at, at_wall) = (Instant::now(), jiff::Timestamp::now());
    drop(replicas.remove(0));
    let ports = replicas::ports(replicas);
    let timeout = Duration::from_secs(120);
    if shards > 0 {
        fleet_testkit::wait_shards_covered(&ports, shards, timeout).await?;
    } else {
        // One Lease: a standby takes over if the leader was killed.
        fleet_testkit::wait_one_leader(&ports, timeout).await?;
    }
    Ok(Kill {
        shards: held,
        led,
        of: shards,
        at,
        at_wall,
        owned_again: Instant::now(),
        owned_again_wall: jiff::Timestamp::now(),
    })
}

/// BundleDeployment writes that succeeded between two counts of the API server's requests.
/// Each object written once is the whole count: anything more is two writers, or a writer
/// that did not know what it had written.
fn bd_writes(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> f64 {
    ["POST", "APPLY", "PATCH", "PUT"]
        .iter()
        .map(|verb| {
            let key = format!("{verb} bundledeployments");
            after.get(&key).copied().unwrap_or(0.0) - before.get(&key).copied().unwrap_or(0.0)
        })
        .sum()
}

/// A Bundle's resources: a ConfigMap of about `kib` KiB, at `version`.
fn resources(kib: usize, version: u32) -> serde_json::Value {
    let mut content = format!("kind: ConfigMap\n# v{version}");
    if kib > 0 {
        content.push_str(&format!("\ndata:\n  blob: {}", "x".repeat(kib * 1024)));
    }
    serde_json::json!([{"name": "cm.yaml", "content": content}])
}

/// The options of every Bundle, and so of each BundleDeployment: with `--values-kib`, Helm
/// values.
fn options(args: &FanoutArgs) -> serde_json::Value {
    if args.values_kib > 0 {
        serde_json::json!({"helm": {"values": helm_values(args.values_kib)}})
    } else {
        serde_json::json!({})
    }
}

/// Helm values of about `kib` KiB: `{"app": {"s00000": "value-00000-...", ...}}`, 36 bytes
/// of JSON per entry.
fn helm_values(kib: usize) -> serde_json::Value {
    let entries: serde_json::Map<String, serde_json::Value> = (0..kib * 1024 / 36)
        .map(|i| {
            (
                format!("s{i:05}"),
                format!("value-{i:05}-{}", "x".repeat(12)).into(),
            )
        })
        .collect();
    serde_json::json!({ "app": entries })
}

/// The name of the `i`th Bundle.
fn bundle_name(i: usize) -> String {
    format!("b{i:03}")
}

/// Lets status settle, then touches every Bundle: the writes that resync makes (must be 0).
async fn idle_resync_writes(
    client: &Client,
    replicas: &[Replica],
    bundles: usize,
) -> anyhow::Result<f64> {
    let writes = || metric_sum(replicas, "fleet_controller_writes_total");
    let mut last = writes().await;
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = writes().await;
        if now == last {
            break;
        }
        last = now;
    }
    let bundle_api: Api<Bundle> = Api::namespaced(client.clone(), NS);
    for i in 0..bundles {
        bundle_api
            .patch(
                &bundle_name(i),
                &PatchParams::default(),
                &Patch::Merge(
                    serde_json::json!({"metadata": {"annotations": {"bench/resync": "1"}}}),
                ),
            )
            .await
            .context("touching a Bundle")?;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    Ok(writes().await - last)
}

/// Copies the replicas' and the API server's logs into `dir` (`FANOUT_KEEP_LOG`).
fn keep_logs(plane: &ControlPlane, work: &Path, dir: &Path, replicas: usize) -> anyhow::Result<()> {
    for replica in 0..replicas {
        let name = replicas::log_name(replica);
        // A killed replica's log is there too.
        std::fs::copy(work.join(&name), dir.join(&name))
            .with_context(|| format!("copying {name}"))?;
    }
    std::fs::copy(
        plane.dir().join("kube-apiserver.log"),
        dir.join("kube-apiserver.log"),
    )
    .context("copying the API server's log")?;
    Ok(())
}
