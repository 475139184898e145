//! `cargo xtask bench ...`: benchmarks that print numbers (never timed assertions in tests).

mod agent;
mod failover;
mod fanout;
mod gitjob;
mod requests;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

#[derive(Debug, clap::Subcommand)]
pub enum Bench {
    /// Leader failover: real contender processes on a local control plane; the leader is
    /// stopped with SIGTERM (graceful) and SIGKILL (crash) in turn, and the time until a
    /// standby reports `acquired` is measured.
    Failover(failover::FailoverArgs),
    /// gitjob: commit-to-Bundle latency via webhook and via polling, a repository of many
    /// bundles, and the API writes of unchanged polls.
    Gitjob(gitjob::GitjobArgs),
    /// fleet-controller: N clusters x M bundles to BundleDeployments, against the raw create
    /// rate of the same control plane; peak RSS; writes of an idle resync.
    Fanout(fanout::FanoutArgs),
    /// fleet-agent: Bundle change to applied-and-reported latency, RSS idle and loaded.
    Agent(agent::AgentArgs),
}

pub fn run(bench: Bench) -> anyhow::Result<()> {
    match bench {
        Bench::Failover(args) => failover::run(&args),
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
