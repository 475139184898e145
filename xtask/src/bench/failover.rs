//! `cargo xtask bench failover`: real contender processes on a local control plane; the
//! leader is stopped with SIGTERM (graceful) and SIGKILL (crash) in turn, and the time until
//! a standby reports `acquired` is measured, with the overlaps of leadership observed (must
//! be none) and the standbys' acquire attempts while a live leader held the Lease.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::bail;
use fleet_api::duration::parse_go_duration;
use fleet_election::trace::{ActingSpan, TraceEvent, overlaps};
use fleet_testkit::process::{SIGKILL, SIGTERM};
use fleet_testkit::{ControlPlane, Lifetime, ManagedProcess};

use super::{build_release_bin, percentile};

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

/// How a trial stops the leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Graceful,
    Crash,
}

impl Mode {
    const ALL: [Mode; 2] = [Mode::Graceful, Mode::Crash];

    fn name(self) -> &'static str {
        match self {
            Mode::Graceful => "graceful",
            Mode::Crash => "crash",
        }
    }
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

/// The contenders: those running, and those stopped (whose traces still count).
struct Pool<'a> {
    args: &'a FailoverArgs,
    binary: PathBuf,
    kubeconfig: PathBuf,
    logs: PathBuf,
    spawned: usize,
    running: Vec<Contender>,
    retired: Vec<Contender>,
}

impl Pool<'_> {
    /// Starts one more contender.
    fn spawn(&mut self) -> anyhow::Result<()> {
        self.spawned += 1;
        let identity = format!("contender-{}", self.spawned);
        let args = self.args;
        let mut cmd = Command::new(&self.binary);
        cmd.arg(format!("--kubeconfig={}", self.kubeconfig.display()))
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
            &self.logs.join(format!("{identity}.log")),
            Lifetime::Owned,
        )?;
        self.running.push(Contender { identity, process });
        Ok(())
    }

    /// Every trace event of every contender, running or retired.
    fn events(&self) -> Vec<TraceEvent> {
        self.running
            .iter()
            .chain(&self.retired)
            .flat_map(Contender::events)
            .collect()
    }
}

/// One trial: who led, who took over, and after how long.
struct Trial {
    mode: Mode,
    took_ms: f64,
    from: String,
    to: String,
    /// Acquire attempts by standbys while the stopped leader was alive (must be none).
    standby_attempts: usize,
}

pub fn run(args: &FailoverArgs) -> anyhow::Result<()> {
    fleet_election::Timings {
        lease_duration: args.lease_duration,
        renew_deadline: args.renew_deadline,
        retry_period: args.retry_period,
    }
    .validate()?;
    if args.replicas < 2 {
        bail!("--replicas must be at least 2");
    }
    let binary = build_release_bin("fleet-election", "fleet-election-contender")?;
    let runtime = tokio::runtime::Runtime::new()?;
    let plane = runtime.block_on(ControlPlane::builder().controller_manager(false).start())?;
    let logs = plane.dir().join("contenders");
    std::fs::create_dir_all(&logs)?;
    let mut pool = Pool {
        args,
        binary,
        kubeconfig: plane.kubeconfig_path().to_path_buf(),
        logs,
        spawned: 0,
        running: Vec::new(),
        retired: Vec::new(),
    };
    for _ in 0..args.replicas {
        pool.spawn()?;
    }
    println!(
        "failover benchmark: {} replicas, lease {:?} / renew deadline {:?} / retry {:?}, {} trials per mode",
        args.replicas, args.lease_duration, args.renew_deadline, args.retry_period, args.trials
    );
    let mut trials = Vec::new();
    for trial in 0..args.trials * 2 {
        let result = run_trial(&mut pool, Mode::ALL[trial % 2])?;
        println!(
            "  trial {:>2} {:<8} {:>9.1} ms  ({} -> {})",
            trial + 1,
            result.mode.name(),
            result.took_ms,
            result.from,
            result.to
        );
        trials.push(result);
    }
    let overlapping = overlaps(&pool.events());
    print_summary(&trials, &overlapping);
    for contender in &mut pool.running {
        contender.process.stop(Duration::from_secs(10));
    }
    if !overlapping.is_empty() {
        bail!("two replicas acted at once");
    }
    Ok(())
}

/// Waits for a leader observed by every standby, stops it as `mode` says, measures until a
/// standby acquires, and replaces the stopped contender with a new one.
fn run_trial(pool: &mut Pool<'_>, mode: Mode) -> anyhow::Result<Trial> {
    let patience = pool.args.lease_duration * 3 + Duration::from_secs(10);
    // The leader, and every standby having observed it (so all watches are warm).
    let leader = wait("a leader", patience, || {
        pool.running
            .iter()
            .position(|c| fleet_election::trace::is_leading(&c.events()))
    })?;
    let leader_id = pool.running[leader].identity.clone();
    let standbys = || pool.running.iter().filter(|c| c.identity != leader_id);
    wait("standbys to observe the leader", patience, || {
        standbys()
            .all(|c| c.has_event("new_leader", 0.0, Some(&leader_id)).is_some())
            .then_some(())
    })?;
    let stopped_at = now_ms();
    let led_since = pool.running[leader]
        .events()
        .iter()
        .rev()
        .find(|e| e.event == "acquired")
        .map_or(stopped_at, |e| e.ts_ms);
    let standby_attempts = standbys()
        .flat_map(Contender::events)
        .filter(|e| e.event == "attempting" && e.ts_ms > led_since && e.ts_ms < stopped_at)
        .count();
    let signal = match mode {
        Mode::Graceful => SIGTERM,
        Mode::Crash => SIGKILL,
    };
    pool.running[leader].process.signal(signal)?;
    let acquired = wait("a standby to acquire", patience, || {
        standbys().find_map(|c| c.has_event("acquired", stopped_at, None))
    })?;
    let mut old = pool.running.remove(leader);
    old.process.stop(Duration::from_secs(10));
    pool.retired.push(old);
    pool.spawn()?;
    Ok(Trial {
        mode,
        took_ms: acquired.ts_ms - stopped_at,
        from: leader_id,
        to: acquired.identity,
        standby_attempts,
    })
}

/// Prints the percentiles per mode, the overlaps and the standbys' attempts.
fn print_summary(trials: &[Trial], overlapping: &[(ActingSpan, ActingSpan)]) {
    println!("\nmode       trials       p50       p95       max");
    for mode in Mode::ALL {
        let mut times: Vec<f64> = trials
            .iter()
            .filter(|t| t.mode == mode)
            .map(|t| t.took_ms)
            .collect();
        times.sort_by(f64::total_cmp);
        println!(
            "{:<10} {:>6} {:>7.0} ms {:>7.0} ms {:>7.0} ms",
            mode.name(),
            times.len(),
            percentile(&times, 50.0),
            percentile(&times, 95.0),
            times.last().copied().unwrap_or_default()
        );
    }
    let standby_attempts: usize = trials.iter().map(|t| t.standby_attempts).sum();
    println!("overlapping leadership observations: {}", overlapping.len());
    println!("standby acquire attempts while a live leader held the Lease: {standby_attempts}");
    for (a, b) in overlapping {
        println!("  overlap: {a:?} / {b:?}");
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
