//! A process that contends for a Lease and prints one JSON line per event (see
//! `fleet_election::trace::TraceEvent`); while leading, its "work" prints an `act` line every
//! `--act-interval`, checking `still_leading()` first. Tests and `cargo xtask bench failover`
//! run several of these as separate processes and read their output.
//!
//! SIGTERM or SIGINT: stop the work, release the Lease, print `exited`, exit 0.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use fleet_api::duration::parse_go_duration;
use fleet_election::trace::TraceEvent;
use fleet_election::{
    ElectionArgs, ElectionEvent, ElectionMetrics, Elector, Strategy, run_while_leading,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
struct Args {
    /// Kubeconfig file of the cluster holding the Lease.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: PathBuf,
    #[arg(long, default_value = "fleet-election-contender")]
    lease: String,
    #[arg(long, default_value = "default")]
    namespace: String,
    /// How often the work acts while leading.
    #[arg(long, default_value = "20ms", value_parser = parse_go_duration)]
    act_interval: Duration,
    #[command(flatten)]
    election: ElectionArgs,
}

fn now_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or_default()
}

fn print(
    identity: &str,
    event: &str,
    term: Option<u64>,
    failover_ms: Option<f64>,
    detail: Option<String>,
) {
    print_at(now_ms(), identity, event, term, failover_ms, detail);
}

fn print_at(
    ts_ms: f64,
    identity: &str,
    event: &str,
    term: Option<u64>,
    failover_ms: Option<f64>,
    detail: Option<String>,
) {
    let line = TraceEvent {
        ts_ms,
        identity: identity.to_owned(),
        event: event.to_owned(),
        term,
        failover_ms,
        detail,
    };
    if let Ok(json) = serde_json::to_string(&line) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{json}");
        let _ = out.flush();
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let kubeconfig = Kubeconfig::read_from(&args.kubeconfig)
        .with_context(|| format!("reading {}", args.kubeconfig.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .context("kubeconfig")?;
    let client = kube::Client::try_from(config)?;
    let election = args.election.config(&args.lease, &args.namespace)?;
    let identity = election.identity.clone();
    let shutdown = CancellationToken::new();
    let elector = match args.election.strategy {
        Strategy::Standard => Elector::new(client, election, ElectionMetrics::default()).spawn(),
        Strategy::Coordinated => {
            fleet_election::coordinated::spawn(
                client,
                election,
                ElectionMetrics::default(),
                &args.election.binary_version,
                shutdown.clone(),
            )
            .await
        }
    };

    let printer = tokio::spawn(print_events(elector.subscribe(), identity.clone()));
    print(&identity, "ready", None, None, None);

    cancel_on_signals(shutdown.clone())?;

    let act_interval = args.act_interval;
    let work_terms = Arc::new(AtomicU64::new(0));
    run_while_leading(elector, shutdown, |leadership| {
        let identity = identity.clone();
        let term = work_terms.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            loop {
                // The timestamp is taken before the check: a process frozen in between finds
                // `still_leading()` false when it resumes, so no `act` can carry a time from
                // after another replica's acquire.
                let ts = now_ms();
                if !leadership.still_leading() {
                    break;
                }
                print_at(ts, &identity, "act", Some(term), None, None);
                tokio::select! {
                    () = leadership.cancelled() => break,
                    () = tokio::time::sleep(act_interval) => {}
                }
            }
        }
    })
    .await;
    // Let the printer drain the release event.
    tokio::time::sleep(Duration::from_millis(20)).await;
    printer.abort();
    print(&identity, "exited", None, None, None);
    Ok(())
}

/// Prints each election event as a trace line, numbering the terms this replica acquires.
async fn print_events(
    mut events: tokio::sync::broadcast::Receiver<ElectionEvent>,
    identity: String,
) {
    let mut term = 0;
    while let Ok(event) = events.recv().await {
        let current = Some(term);
        match event {
            ElectionEvent::Attempting => print(&identity, "attempting", None, None, None),
            ElectionEvent::Acquired { failover, .. } => {
                term += 1;
                let failover_ms = failover.map(|d| d.as_secs_f64() * 1000.0);
                print(&identity, "acquired", Some(term), failover_ms, None);
            }
            ElectionEvent::RenewFailed { error } => {
                print(&identity, "renew_failed", current, None, Some(error));
            }
            ElectionEvent::Lost { reason } => print(&identity, "lost", current, None, Some(reason)),
            ElectionEvent::Released => print(&identity, "released", current, None, None),
            ElectionEvent::NewLeader { holder } => {
                print(&identity, "new_leader", None, None, Some(holder));
            }
        }
    }
}

/// Cancels `shutdown` on SIGTERM or SIGINT.
fn cancel_on_signals(shutdown: CancellationToken) -> std::io::Result<()> {
    let mut term_signal = signal(SignalKind::terminate())?;
    let mut int_signal = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term_signal.recv() => {}
            _ = int_signal.recv() => {}
        }
        shutdown.cancel();
    });
    Ok(())
}
