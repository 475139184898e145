//! `cargo xtask bench fanout --clusters N --bundles M`: the release fleet-controller on a local
//! control plane with N Clusters; M Bundles targeting all of them are created at once and the
//! time until all N x M BundleDeployments exist is measured (a watch counts them). In the same
//! run, a plain client creates N x M BundleDeployments with the same concurrency: the raw
//! create rate of this control plane, the physical limit. Prints both rates and their ratio,
//! the controller's peak RSS, and the writes of an idle resync. With `--replicas R --shards S`
//! the controller runs as R replicas sharing S dynamic shards (peak RSS per replica); with
//! `--kill-one` one replica is SIGKILLed halfway through the fan-out, and the time until its
//! shards are owned again is printed.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use fleet_api::{Bundle, BundleDeployment, BundleDeploymentSpec, Cluster, ClusterGroup};
use fleet_testkit::{ControlPlane, Lifetime, ManagedProcess, apply_crds, ports, wait_for_count};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{ObjectMeta, PostParams};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};

use super::{block_on, build_release_bin, rss_kib};

const NS: &str = "fleet-default";

#[derive(Debug, clap::Args)]
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
    /// SIGKILL one replica when half the BundleDeployments exist.
    #[arg(long)]
    kill_one: bool,
}

pub fn run(args: &FanoutArgs) -> anyhow::Result<()> {
    let binary = build_release_bin("fleet-controller", "fleet-controller")?;
    block_on(bench(args, &binary))
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

async fn bench(args: &FanoutArgs, binary: &std::path::Path) -> anyhow::Result<()> {
    let work = tempfile::tempdir()?;
    let plane = ControlPlane::start().await?;
    let client = plane.client();
    apply_crds(&client, &fleet_api::crds()).await?;
    create_namespace(&client, NS).await?;
    let total = args.clusters * args.bundles;

    // The physical limit: a plain client creating as many BundleDeployments, once alone and
    // once observed by the same watch that counts the fan-out's (the baseline of the ratio).
    create_namespace(&client, "raw").await?;
    let raw_api: Api<BundleDeployment> = Api::namespaced(client.clone(), "raw");
    // Warm the API server's path for this kind first (discovery, first writes).
    create_all(&raw_api, raw_deployments("warmup", 100), args.concurrency).await?;
    let started = Instant::now();
    create_all(&raw_api, raw_deployments("raw", total), args.concurrency)
        .await
        .context("the raw client's creates")?;
    let raw_alone = total as f64 / started.elapsed().as_secs_f64();
    let observed = Api::<BundleDeployment>::namespaced(client.clone(), "raw");
    let mut events = watch_managed(&client);
    let started = Instant::now();
    let mut seen = HashSet::new();
    let (created, seen) = futures::join!(
        create_all(
            &observed,
            raw_deployments("observed", total),
            args.concurrency
        ),
        seen_until(&mut events, &mut seen, total),
    );
    created.context("the raw client's observed creates")?;
    seen?;
    let raw_rate = total as f64 / started.elapsed().as_secs_f64();
    drop(events);

    // Out of the controller's way: it watches BundleDeployments in every namespace.
    raw_api
        .delete_collection(&Default::default(), &Default::default())
        .await
        .context("deleting the raw client's BundleDeployments")?;
    let clusters: Vec<Cluster> = (0..args.clusters)
        .map(|i| serde_json::from_value(serde_json::json!({"metadata": {"name": format!("c{i:05}"), "labels": {"env": "bench"}}, "spec": {}})))
        .collect::<Result<_, _>>()?;
    create_all(
        &Api::<Cluster>::namespaced(client.clone(), NS),
        clusters,
        args.concurrency,
    )
    .await?;
    let group: ClusterGroup = serde_json::from_value(
        serde_json::json!({"metadata": {"name": "default"}, "spec": {"selector": {}}}),
    )?;
    Api::<ClusterGroup>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &group)
        .await?;

    let mut replicas = Vec::new();
    for replica in 0..args.replicas.max(1) {
        replicas.push(Replica::spawn(binary, &plane, work.path(), replica, args)?);
    }
    let controller = &replicas[0].process;
    if args.shards > 0 {
        let ports: Vec<u16> = replicas.iter().map(|r| r.port).collect();
        // Joins hand shards over: the fan-out starts with the shard map settled.
        fleet_testkit::wait_shards_balanced(&ports, args.shards, Duration::from_secs(120)).await?;
    }

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
    .with_context(|| controller.log_tail(20))?;

    // What the replicas hold before the fan-out (clusters cached and rolled up).
    let rss_before = rss_of(&replicas, "VmRSS:");

    // Count BundleDeployments as they appear (a watch, from now).
    let mut events = watch_managed(&client);
    let bundle_api: Api<Bundle> = Api::namespaced(client.clone(), NS);
    let requests_before = super::requests::requests(&client, "fleet.cattle.io").await?;
    let cpu_before = cpu_of(&replicas);
    let started = Instant::now();
    for i in 0..args.bundles {
        let bundle: Bundle = serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("b{i:03}")},
            "spec": {"targets": [{"clusterGroup": "default"}], "resources": [{"name": "cm.yaml", "content": "kind: ConfigMap"}]},
        }))?;
        bundle_api.create(&PostParams::default(), &bundle).await?;
    }
    let mut seen = HashSet::new();
    let mut killed: Option<std::time::Duration> = None;
    if args.kill_one && replicas.len() > 1 {
        seen_until(&mut events, &mut seen, total / 2).await?;
        let at = Instant::now();
        drop(replicas.remove(0));
        if args.shards > 0 {
            let ports: Vec<u16> = replicas.iter().map(|r| r.port).collect();
            fleet_testkit::wait_shards_covered(&ports, args.shards, Duration::from_secs(120))
                .await?;
        }
        killed = Some(at.elapsed());
    }
    seen_until(&mut events, &mut seen, total).await?;
    let elapsed = started.elapsed();
    let rate = total as f64 / elapsed.as_secs_f64();
    let requests_after = super::requests::requests(&client, "fleet.cattle.io").await?;
    let requests = super::requests::delta(&requests_before, &requests_after);
    // Every BundleDeployment written once: anything more is two writers, or a writer that
    // did not know what it had written.
    let bd_writes: f64 = ["POST", "APPLY", "PATCH", "PUT"]
        .iter()
        .map(|verb| {
            let key = format!("{verb} bundledeployments");
            requests_after.get(&key).copied().unwrap_or(0.0)
                - requests_before.get(&key).copied().unwrap_or(0.0)
        })
        .sum();
    let extra_writes = bd_writes - total as f64;
    // The survivors' (a killed replica is no longer listed).
    let cpu: Vec<String> = cpu_of(&replicas)
        .iter()
        .map(|(pid, after)| {
            let before = cpu_before.get(pid).copied().unwrap_or(0.0);
            format!("{:.1}s", after - before)
        })
        .collect();

    // The status follows: every Cluster's summary counts its BundleDeployments.
    let statuses = eventually_rolled_up(&cluster_api, args.bundles, args.clusters).await;
    let statuses_after = started.elapsed();

    // Idle: let status settle, then a resync of every Bundle must write nothing.
    let ports: Vec<u16> = replicas.iter().map(|r| r.port).collect();
    let writes = || async {
        let mut total = 0.0;
        for port in &ports {
            total += fleet_testkit::metric(*port, "fleet_controller_writes_total").await;
        }
        total
    };
    let mut last = writes().await;
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = writes().await;
        if now == last {
            break;
        }
        last = now;
    }
    for i in 0..args.bundles {
        bundle_api
            .patch(
                &format!("b{i:03}"),
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(
                    serde_json::json!({"metadata": {"annotations": {"bench/resync": "1"}}}),
                ),
            )
            .await?;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle_writes = writes().await - last;
    let peak_rss_mib = rss_of(&replicas, "VmHWM:");
    let rss_after = rss_of(&replicas, "VmRSS:");
    let rss_file = rss_of(&replicas, "RssFile:");
    let rolled_up = rolled_up(&cluster_api, args.bundles).await?;
    println!(
        "fanout benchmark (release fleet-controller, local control plane {})",
        plane.server()
    );
    println!(
        "clusters={} bundles={} bundle deployments={total} concurrency={} replicas={} shards={}",
        args.clusters, args.bundles, args.concurrency, args.replicas, args.shards
    );
    println!(
        "raw client create rate: {raw_rate:.0}/s observed by the watch that counts the fan-out ({raw_alone:.0}/s alone)"
    );
    println!(
        "controller: all BundleDeployments in {:.2}s = {rate:.0}/s ({:.0}% of raw)",
        elapsed.as_secs_f64(),
        100.0 * rate / raw_rate
    );
    println!("API requests during the fan-out: {requests}");
    println!(
        "BundleDeployment writes beyond one per object (overlapping or stale writers; must be 0): {extra_writes:.0}"
    );
    println!(
        "controller CPU during the fan-out per replica: {}",
        cpu.join(", ")
    );
    println!(
        "controller peak RSS per replica: {}",
        mib_list(&peak_rss_mib)
    );
    println!(
        "controller RSS per replica before the fan-out: {}; after: {}",
        mib_list(&rss_before),
        mib_list(&rss_after)
    );
    println!(
        "controller peak RSS growth over the fan-out per replica (peak - before): {}",
        mib_list(&growth(&peak_rss_mib, &rss_before))
    );
    println!(
        "of the RSS after, file-backed (the binary's code and data, shared by replicas on a node): {}",
        mib_list(&rss_file)
    );
    if let Some(after) = killed {
        println!(
            "one replica SIGKILLed at half the fan-out: its shards owned again after {:.2}s",
            after.as_secs_f64()
        );
    }
    match statuses {
        Ok(()) => println!(
            "every Cluster's status counts its BundleDeployments after {:.2}s ({:.2}s after the last one)",
            statuses_after.as_secs_f64(),
            (statuses_after - elapsed).as_secs_f64()
        ),
        Err(e) => println!("Cluster statuses: {e}"),
    }
    println!(
        "clusters whose status counts all their BundleDeployments: {rolled_up}/{}",
        args.clusters
    );
    println!("writes of an idle resync of every Bundle: {idle_writes}");
    if let Ok(dir) = std::env::var("FANOUT_KEEP_LOG") {
        for replica in 0..args.replicas.max(1) {
            let name = format!("controller-{replica}.log");
            std::fs::copy(
                work.path().join(&name),
                std::path::Path::new(&dir).join(&name),
            )?;
        }
        std::fs::copy(
            plane.dir().join("kube-apiserver.log"),
            std::path::Path::new(&dir).join("kube-apiserver.log"),
        )?;
    }
    Ok(())
}

/// How many Clusters' summaries count `bundles` BundleDeployments.
async fn rolled_up(api: &Api<Cluster>, bundles: usize) -> anyhow::Result<usize> {
    Ok(api
        .list(&Default::default())
        .await?
        .items
        .iter()
        .filter(|c| {
            c.status
                .as_ref()
                .is_some_and(|s| s.summary.desired_ready == bundles as i64)
        })
        .count())
}

/// Waits (at most 120 s) until every one of `clusters` Clusters counts `bundles`.
async fn eventually_rolled_up(
    api: &Api<Cluster>,
    bundles: usize,
    clusters: usize,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let done = rolled_up(api, bundles).await?;
        if done == clusters {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("only {done}/{clusters} Clusters count their BundleDeployments after 120s");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// One controller replica of the benchmark.
struct Replica {
    process: ManagedProcess,
    port: u16,
}

impl Replica {
    fn spawn(
        binary: &std::path::Path,
        plane: &ControlPlane,
        dir: &std::path::Path,
        index: usize,
        args: &FanoutArgs,
    ) -> anyhow::Result<Self> {
        let port = ports::free_port()?;
        let mut cmd = std::process::Command::new(binary);
        cmd.args([
            format!("--kubeconfig={}", plane.kubeconfig_path().display()),
            "--namespace=default".to_owned(),
            format!("--metrics-bind-address=127.0.0.1:{port}"),
            format!("--health-bind-address=127.0.0.1:{port}"),
            format!("--write-concurrency={}", args.concurrency),
            format!("--election-identity=controller-{index}"),
            format!("--shards={}", args.shards),
        ])
        .env(
            "RUST_LOG",
            std::env::var("FANOUT_LOG").unwrap_or_else(|_| "warn".to_owned()),
        );
        let name = format!("controller-{index}");
        let process = ManagedProcess::spawn(
            &name,
            cmd,
            &dir.join(format!("{name}.log")),
            Lifetime::Owned,
        )?;
        Ok(Self { process, port })
    }
}

/// `count` BundleDeployments `<prefix>-<i>` for the raw client, labelled as the controller's.
fn raw_deployments(prefix: &str, count: usize) -> Vec<BundleDeployment> {
    (0..count)
        .map(|i| {
            let mut bd = BundleDeployment::new(&format!("{prefix}-{i}"), sample_spec());
            bd.metadata.labels = Some(
                [
                    ("fleet.cattle.io/bundle-name".to_owned(), "raw".to_owned()),
                    ("fleet.cattle.io/managed".to_owned(), "true".to_owned()),
                ]
                .into(),
            );
            bd
        })
        .collect()
}

type Events =
    futures::stream::BoxStream<'static, Result<watcher::Event<BundleDeployment>, watcher::Error>>;

/// A watch of the BundleDeployments labelled managed, in every namespace, from now.
fn watch_managed(client: &Client) -> Events {
    watcher(
        Api::<BundleDeployment>::all(client.clone()),
        watcher::Config::default().labels("fleet.cattle.io/managed=true"),
    )
    .boxed()
}

/// Waits (at most 900 s) until `events` have shown `total` distinct BundleDeployments,
/// counted in `seen`.
async fn seen_until(
    events: &mut Events,
    seen: &mut HashSet<(String, String)>,
    total: usize,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(900);
    while seen.len() < total {
        let event = tokio::time::timeout_at(deadline.into(), events.next())
            .await
            .with_context(|| format!("only {}/{total} BundleDeployments after 900s", seen.len()))?;
        match event {
            Some(Ok(watcher::Event::Apply(bd) | watcher::Event::InitApply(bd))) => {
                seen.insert((bd.namespace().unwrap_or_default(), bd.name_any()));
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => tracing_free_warn(&e.to_string()),
            None => bail!("watch ended"),
        }
    }
    Ok(())
}

fn sample_spec() -> BundleDeploymentSpec {
    serde_json::from_value(serde_json::json!({
        "deploymentID": "s-0000000000000000000000000000000000000000000000000000000000000000:1111111111111111111111111111111111111111111111111111111111111111",
        "stagedDeploymentID": "s-0000000000000000000000000000000000000000000000000000000000000000:1111111111111111111111111111111111111111111111111111111111111111",
        "options": {}, "stagedOptions": {},
    }))
    .unwrap_or_default()
}

/// Each replica's `field` of `/proc/<pid>/status` (`VmRSS:`, `VmHWM:`, `RssFile:`), in MiB.
fn rss_of(replicas: &[Replica], field: &str) -> Vec<Option<f64>> {
    replicas
        .iter()
        .map(|r| {
            r.process
                .pid()
                .and_then(|pid| rss_kib(pid, field))
                .map(|k| k as f64 / 1024.0)
        })
        .collect()
}

/// Each replica's CPU seconds so far, by pid.
fn cpu_of(replicas: &[Replica]) -> std::collections::BTreeMap<u32, f64> {
    replicas
        .iter()
        .filter_map(|r| {
            let pid = r.process.pid()?;
            Some((pid, super::requests::cpu_seconds(pid)?))
        })
        .collect()
}

/// Each replica's `peak - before`, where both are known.
fn growth(peak: &[Option<f64>], before: &[Option<f64>]) -> Vec<Option<f64>> {
    peak.iter()
        .zip(before)
        .map(|(peak, before)| Some((*peak)? - (*before)?))
        .collect()
}

fn mib_list(values: &[Option<f64>]) -> String {
    let values: Vec<String> = values
        .iter()
        .map(|mib| mib.map_or_else(|| "unknown".to_owned(), |m| format!("{m:.1} MiB")))
        .collect();
    values.join(", ")
}

fn tracing_free_warn(message: &str) {
    eprintln!("watch: {message}");
}
