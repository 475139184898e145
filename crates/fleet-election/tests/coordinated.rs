//! Coordinated leader election (KEP-4355) against a real kube-apiserver with the
//! `CoordinatedLeaderElection` feature: the API server picks the leader among the registered
//! candidates, the oldest version first, so during a rolling upgrade the old version keeps
//! leading until it is gone; and without the feature, a clear fallback to the standard
//! election.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use fleet_election::trace::{TraceEvent, overlaps};
use fleet_testkit::{ControlPlane, Lifetime, ManagedProcess, eventually};

const LEASE: &str = "coordinated";
const WAIT: Duration = Duration::from_secs(60);

fn contender(dir: &Path, kubeconfig: &Path, identity: &str, version: &str) -> ManagedProcess {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fleet-election-contender"));
    cmd.arg(format!("--kubeconfig={}", kubeconfig.display()))
        .arg(format!("--lease={LEASE}"))
        .arg(format!("--election-identity={identity}"))
        .arg("--election-strategy=coordinated")
        .arg(format!("--election-binary-version={version}"))
        .args([
            "--election-lease-duration=3s",
            "--election-renew-deadline=2s",
            "--election-retry-period=500ms",
        ])
        .env("RUST_LOG", "info");
    ManagedProcess::spawn(
        identity,
        cmd,
        &dir.join(format!("{identity}.log")),
        Lifetime::Owned,
    )
    .expect("spawn contender")
}

fn events(process: &ManagedProcess) -> Vec<TraceEvent> {
    fleet_election::trace::read_file(process.log_path())
}

async fn wait_leading(process: &ManagedProcess, leading: bool) {
    let what = format!("{} leading={leading}", process.name());
    eventually(&what, WAIT, Duration::from_millis(50), || async {
        if fleet_election::trace::is_leading(&events(process)) == leading {
            Ok(())
        } else {
            Err(process.log_tail(10))
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_server_keeps_the_old_version_leading_until_it_is_gone() {
    let plane = ControlPlane::builder()
        .controller_manager(false)
        .apiserver_args(&[
            "--feature-gates=CoordinatedLeaderElection=true",
            "--runtime-config=coordination.k8s.io/v1beta1=true",
        ])
        .start()
        .await
        .unwrap_or_else(|e| panic!("control plane: {e}"));
    let dir = plane.dir().to_owned();
    let kubeconfig = plane.kubeconfig_path();
    // A rolling upgrade: the new version starts first and leads alone...
    let new = contender(&dir, kubeconfig, "replica-new", "1.1.0");
    wait_leading(&new, true).await;
    // ...an old-version replica is still there: the API server hands it the Lease.
    let mut old = contender(&dir, kubeconfig, "replica-old", "1.0.0");
    wait_leading(&old, true).await;
    wait_leading(&new, false).await;
    // The old version is gone: the new one leads.
    old.kill();
    wait_leading(&new, true).await;
    let all: Vec<TraceEvent> = events(&new).into_iter().chain(events(&old)).collect();
    assert!(overlaps(&all).is_empty(), "never two leaders acting");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_feature_it_says_so_and_elects_as_usual() {
    let plane = ControlPlane::builder()
        .controller_manager(false)
        .start()
        .await
        .unwrap_or_else(|e| panic!("control plane: {e}"));
    let only = contender(plane.dir(), plane.kubeconfig_path(), "replica", "1.0.0");
    wait_leading(&only, true).await;
    assert!(
        only.log_tail(50)
            .contains("coordinated leader election is not available"),
        "{}",
        only.log_tail(20)
    );
}
