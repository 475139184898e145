//! The controller replicas under test: started as the release binary, measured from `/proc`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use fleet_testkit::{ControlPlane, Lifetime, ManagedProcess, ports};

use super::FanoutArgs;
use crate::bench::{requests, rss_kib};

/// One controller replica of the benchmark.
pub struct Replica {
    pub process: ManagedProcess,
    pub port: u16,
}

impl Replica {
    fn spawn(
        binary: &Path,
        plane: &ControlPlane,
        dir: &Path,
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
        let process = ManagedProcess::spawn(
            &format!("controller-{index}"),
            cmd,
            &dir.join(log_name(index)),
            Lifetime::Owned,
        )?;
        Ok(Self { process, port })
    }
}

/// The log file of replica `index`.
pub fn log_name(index: usize) -> String {
    format!("controller-{index}.log")
}

/// Starts the replicas (at least one), logging into `dir`; with shards, waits until the joins
/// have handed shards over, so that the fan-out starts with the shard map settled.
pub async fn start(
    binary: &Path,
    plane: &ControlPlane,
    dir: &Path,
    args: &FanoutArgs,
) -> anyhow::Result<Vec<Replica>> {
    let replicas = (0..args.replicas.max(1))
        .map(|index| Replica::spawn(binary, plane, dir, index, args))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if args.shards > 0 {
        fleet_testkit::wait_shards_balanced(
            &ports(&replicas),
            args.shards,
            Duration::from_secs(120),
        )
        .await?;
    }
    Ok(replicas)
}

/// The replicas' metrics ports.
pub fn ports(replicas: &[Replica]) -> Vec<u16> {
    replicas.iter().map(|r| r.port).collect()
}

/// Each replica's `field` of `/proc/<pid>/status` (`VmRSS:`, `VmHWM:`, `RssFile:`), in MiB.
pub fn rss_of(replicas: &[Replica], field: &str) -> Vec<Option<f64>> {
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
pub fn cpu_of(replicas: &[Replica]) -> BTreeMap<u32, f64> {
    replicas
        .iter()
        .filter_map(|r| {
            let pid = r.process.pid()?;
            Some((pid, requests::cpu_seconds(pid)?))
        })
        .collect()
}

/// The CPU each replica in `after` used since `before` (a replica missing from `before`:
/// all of it).
pub fn cpu_used(before: &BTreeMap<u32, f64>, after: &BTreeMap<u32, f64>) -> Vec<f64> {
    after
        .iter()
        .map(|(pid, after)| after - before.get(pid).copied().unwrap_or(0.0))
        .collect()
}

/// The sum of a counter over the replicas.
pub async fn metric_sum(replicas: &[Replica], name: &str) -> f64 {
    let mut total = 0.0;
    for port in ports(replicas) {
        total += fleet_testkit::metric(port, name).await;
    }
    total
}
