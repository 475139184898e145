//! What helmops' real-control-plane tests share.

// Each test binary uses a part of this module.
#![allow(dead_code)]

use std::process::Command;
use std::time::Duration;

use fleet_api::HelmOp;
use fleet_testkit::file_server::FileServer;
use fleet_testkit::helm_repo::HelmRepoDir;
use fleet_testkit::{ControlPlane, Lifetime, ManagedProcess, ports};

pub const NS: &str = "fleet-local";
pub const WAIT: Duration = Duration::from_secs(60);

/// A control plane with the CRDs and the HelmOps' namespace.
pub async fn plane() -> ControlPlane {
    fleet_testkit::plane_with(&fleet_api::crds(), NS)
        .await
        .expect("control plane")
}

/// A helmops replica named `name` (short Lease timings); returns it and its admin port.
pub fn replica(plane: &ControlPlane, dir: &std::path::Path, name: &str) -> (ManagedProcess, u16) {
    replica_with(plane, dir, name, &[])
}

/// [`replica`] with `extra` arguments.
pub fn replica_with(
    plane: &ControlPlane,
    dir: &std::path::Path,
    name: &str,
    extra: &[&str],
) -> (ManagedProcess, u16) {
    let port = ports::free_port().expect("port");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_helmops"));
    cmd.args([
        format!("--kubeconfig={}", plane.kubeconfig_path().display()),
        "--namespace=default".to_owned(),
        format!("--metrics-bind-address=127.0.0.1:{port}"),
        format!("--health-bind-address=127.0.0.1:{port}"),
        format!("--election-identity={name}"),
        "--election-lease-duration=3s".to_owned(),
        "--election-renew-deadline=2s".to_owned(),
        "--election-retry-period=500ms".to_owned(),
    ]);
    cmd.args(extra);
    let log = dir.join(format!("{name}.log"));
    let process = ManagedProcess::spawn(name, cmd, &log, Lifetime::Owned).expect("spawn");
    (process, port)
}

/// A real Helm repository served over HTTP with chart `web` 1.0.0 (one ConfigMap); keep both
/// values for as long as the repository is used.
pub async fn web_chart_repo() -> (HelmRepoDir, FileServer) {
    let repo = HelmRepoDir::new().expect("repo dir");
    let server = FileServer::start(&repo.root()).await.expect("server");
    let chart = [(
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\n",
    )];
    repo.publish("web", "1.0.0", &chart, &server.url())
        .expect("publish");
    (repo, server)
}

/// A HelmOp `name` of chart `web` from the repository at `repo`, any version.
pub fn web_helmop(name: &str, repo: &str) -> HelmOp {
    serde_saphyr::from_str(&format!(
        "apiVersion: fleet.cattle.io/v1alpha1\nkind: HelmOp\nmetadata:\n  name: {name}\nspec:\n  helm:\n    repo: {repo}\n    chart: web\n"
    ))
    .expect("helmop")
}
