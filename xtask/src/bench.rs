//! `cargo xtask bench ...`: benchmarks that print numbers (never timed assertions in tests).

mod agent;
mod fanout;
mod gitjob;
mod requests;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use fleet_api::duration::parse_go_duration;
use fleet_election::trace::{TraceEvent, overlaps};
use fleet_testkit::process::{SIGKILL, SIGTERM};
use fleet_testkit::{ControlPlane, Lifetime, ManagedProcess};

#[derive(Debug, clap::Subcommand)]
pub enum Bench {
    /// Leader failover: real contender processes on a local control plane; the leader is
    /// stopped with SIGTERM (graceful) and SIGKILL (crash) in turn, and the time until a
    /// standby reports `acquired` is measured.
    Failover(FailoverArgs),
    /// gitjob: commit-to-Bundle latency via webhook and via polling, a repository of many
    /// bundles, and the API writes of unchanged polls.
    Gitjob(gitjob::GitjobArgs),
    /// fleet-controller: N clusters x M bundles to BundleDeployments, against the raw create
    /// rate of the same control plane; peak RSS; writes of an idle resync.
    Fanout(fanout::FanoutArgs),
    /// fleet-agent: Bundle change to applied-and-reported latency, RSS idle and loaded.
    Agent(agent::AgentArgs),
}

#[derive(Debug, clap::Args)]
pub struct FailoverArgs {
    /// Trials per mode.
    #[arg(long, default_value_t = 5)]
    trials: usize,
    /// Contending processes.
    #[arg(long, default_value_t = 3)]
    replicas: usize,
    #[arg(long, default_value = "15s", value_parser = parse_go_duration)]
    lease_duration: Duration,
    #[arg(long, default_value = "10s", value_parser = parse_go_duration)]
    renew_deadline: Duration,
    #[arg(long, default_value = "2s", value_parser = parse_go_duration)]
    retry_period: Duration,
}

pub fn run(bench: Bench) -> anyhow::Result<()> {
    match bench {
        Bench::Failover(args) => failover(&args),
        Bench::Gitjob(args) => gitjob::run(&args),
        Bench::Fanout(args) => fanout::run(&args),
        Bench::Agent(args) => agent::run(&args),
    }
}

/// Runs an async benchmark on a two-thread runtime (the machine's cores).
pub fn block_on<F: std::future::Future<Output = anyhow::Result<()>>>(
    bench: F,
) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(bench)
}

/// A field of `/proc/<pid>/status` in KiB (`VmRSS:` now, `VmHWM:` the peak).
fn rss_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Builds a binary of the workspace in release mode and returns its path.
fn build_release_bin(package: &str, bin: &str) -> anyhow::Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--locked",
            "-p",
            package,
            "--bin",
            bin,
        ])
        .status()
        .context("cargo build")?;
    if !status.success() {
        bail!("building {bin} failed");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    Ok(target.join("release").join(bin))
}

struct Contender {
    identity: String,
    process: ManagedProcess,
}

impl Contender {
    fn events(&self) -> Vec<TraceEvent> {
        fleet_election::trace::read_file(self.process.log_path())
    }

    fn has_event(&self, event: &str, after_ms: f64, detail: Option<&str>) -> Option<TraceEvent> {
        self.events().into_iter().find(|e| {
            e.event == event
                && e.ts_ms >= after_ms
                && detail.is_none_or(|d| e.detail.as_deref() == Some(d))
        })
    }
}

fn now_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or_default()
}

/// Polls `check` every 10 ms until it returns `Some`, or fails after `timeout`.
fn wait<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return Ok(value);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn failover(args: &FailoverArgs) -> anyhow::Result<()> {
    fleet_election::Timings {
        lease_duration: args.lease_duration,
        renew_deadline: args.renew_deadline,
        retry_period: args.retry_period,
    }
    .validate()?;
    if args.replicas < 2 {
        bail!("--replicas must be at least 2");
    }
    let contender_bin = build_release_bin("fleet-election", "fleet-election-contender")?;
    let runtime = tokio::runtime::Runtime::new()?;
    let plane = runtime.block_on(ControlPlane::builder().controller_manager(false).start())?;
    let logs = plane.dir().join("contenders");
    std::fs::create_dir_all(&logs)?;
    let spawned = std::cell::Cell::new(0usize);
    let spawn = || -> anyhow::Result<Contender> {
        spawned.set(spawned.get() + 1);
        let identity = format!("contender-{}", spawned.get());
        let mut cmd = Command::new(&contender_bin);
        cmd.arg(format!(
            "--kubeconfig={}",
            plane.kubeconfig_path().display()
        ))
        .arg("--lease=bench-failover")
        .arg(format!("--election-identity={identity}"))
        .arg(format!(
            "--election-lease-duration={}s",
            args.lease_duration.as_secs()
        ))
        .arg(format!(
            "--election-renew-deadline={}ms",
            args.renew_deadline.as_millis()
        ))
        .arg(format!(
            "--election-retry-period={}ms",
            args.retry_period.as_millis()
        ))
        .env("RUST_LOG", "warn");
        let process = ManagedProcess::spawn(
            &identity,
            cmd,
            &logs.join(format!("{identity}.log")),
            Lifetime::Owned,
        )?;
        Ok(Contender { identity, process })
    };
    let mut pool: Vec<Contender> = (0..args.replicas)
        .map(|_| spawn())
        .collect::<Result<_, _>>()?;
    let mut retired: Vec<Contender> = Vec::new();
    let mut results: Vec<(&str, f64)> = Vec::new();
    let mut standby_attempts = 0;
    let patience = args.lease_duration * 3 + Duration::from_secs(10);

    println!(
        "failover benchmark: {} replicas, lease {:?} / renew deadline {:?} / retry {:?}, {} trials per mode",
        args.replicas, args.lease_duration, args.renew_deadline, args.retry_period, args.trials
    );
    for trial in 0..args.trials * 2 {
        let mode = if trial % 2 == 0 { "graceful" } else { "crash" };
        // The leader, and every standby having observed it (so all watches are warm).
        let leader = wait("a leader", patience, || {
            pool.iter()
                .position(|c| fleet_election::trace::is_leading(&c.events()))
        })?;
        let leader_id = pool[leader].identity.clone();
        wait("standbys to observe the leader", patience, || {
            pool.iter()
                .filter(|c| c.identity != leader_id)
                .all(|c| c.has_event("new_leader", 0.0, Some(&leader_id)).is_some())
                .then_some(())
        })?;
        let stopped_at = now_ms();
        // Acquire attempts by standbys while this leader was alive: must be none.
        let led_since = pool[leader]
            .events()
            .iter()
            .rev()
            .find(|e| e.event == "acquired")
            .map_or(stopped_at, |e| e.ts_ms);
        standby_attempts += pool
            .iter()
            .filter(|c| c.identity != leader_id)
            .flat_map(Contender::events)
            .filter(|e| e.event == "attempting" && e.ts_ms > led_since && e.ts_ms < stopped_at)
            .count();
        pool[leader]
            .process
            .signal(if mode == "graceful" { SIGTERM } else { SIGKILL })?;
        let acquired = wait("a standby to acquire", patience, || {
            pool.iter()
                .filter(|c| c.identity != leader_id)
                .find_map(|c| c.has_event("acquired", stopped_at, None))
        })?;
        let took = acquired.ts_ms - stopped_at;
        println!(
            "  trial {:>2} {mode:<8} {:>9.1} ms  ({} -> {})",
            trial + 1,
            took,
            leader_id,
            acquired.identity
        );
        results.push((mode, took));
        let mut old = pool.remove(leader);
        old.process.stop(Duration::from_secs(10));
        retired.push(old);
        pool.push(spawn()?);
    }

    let events: Vec<TraceEvent> = pool
        .iter()
        .chain(&retired)
        .flat_map(Contender::events)
        .collect();
    let overlapping = overlaps(&events);
    println!("\nmode       trials       p50       p95       max");
    for mode in ["graceful", "crash"] {
        let mut times: Vec<f64> = results
            .iter()
            .filter(|(m, _)| *m == mode)
            .map(|(_, t)| *t)
            .collect();
        times.sort_by(f64::total_cmp);
        println!(
            "{mode:<10} {:>6} {:>7.0} ms {:>7.0} ms {:>7.0} ms",
            times.len(),
            percentile(&times, 50.0),
            percentile(&times, 95.0),
            times.last().copied().unwrap_or_default()
        );
    }
    println!("overlapping leadership observations: {}", overlapping.len());
    println!("standby acquire attempts while a live leader held the Lease: {standby_attempts}");
    for (a, b) in &overlapping {
        println!("  overlap: {a:?} / {b:?}");
    }
    for contender in pool.iter_mut() {
        contender.process.stop(Duration::from_secs(10));
    }
    if !overlapping.is_empty() {
        bail!("two replicas acted at once");
    }
    Ok(())
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(super::percentile(&values, 50.0), 10.0);
        assert_eq!(super::percentile(&values, 95.0), 19.0);
        assert_eq!(super::percentile(&[7.0], 95.0), 7.0);
        assert_eq!(super::percentile(&[], 50.0), 0.0);
    }
}
