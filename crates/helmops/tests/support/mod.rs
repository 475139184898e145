//! What helmops' real-control-plane tests share.

use std::process::Command;
use std::time::Duration;

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
    let log = dir.join(format!("{name}.log"));
    let process = ManagedProcess::spawn(name, cmd, &log, Lifetime::Owned).expect("spawn");
    (process, port)
}
