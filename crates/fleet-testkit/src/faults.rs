//! Faults of the control plane under running components: the API server frozen for longer
//! than a Lease and resumed, killed and started again on the same etcd, and etcd restarted.
//! A fault test inflicts each of [`Fault::ALL`] in turn and checks, after each, that the
//! replicas [`rode_out`] the fault and that work still gets done (and not twice).

use std::time::Duration;

use crate::process::{SIGCONT, SIGSTOP};
use crate::{ControlPlane, Error, ManagedProcess};

/// How long the API server stays frozen: past the tests' Lease (3 s) and renew deadline.
pub const FREEZE: Duration = Duration::from_secs(10);
/// How long the API server stays down before it is started again.
pub const DOWN: Duration = Duration::from_secs(3);
/// How long a restarted API server or etcd may take to serve again.
pub const RESTART: Duration = Duration::from_secs(60);

/// One fault of the control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// SIGSTOP the API server for [`FREEZE`], then SIGCONT.
    FreezeApiServer,
    /// SIGKILL the API server, wait [`DOWN`], start it again on the same etcd.
    RestartApiServer,
    /// Restart etcd on the same data under the running API server.
    RestartEtcd,
}

impl Fault {
    /// Every fault, in the order a test goes through them.
    pub const ALL: [Fault; 3] = [
        Fault::FreezeApiServer,
        Fault::RestartApiServer,
        Fault::RestartEtcd,
    ];

    /// Inflicts the fault on `plane` and returns once its API server serves again.
    pub async fn inflict(self, plane: &mut ControlPlane) -> Result<(), Error> {
        tracing::info!(fault = ?self, "inflicting a control-plane fault");
        match self {
            Fault::FreezeApiServer => {
                process(plane, "kube-apiserver")?.signal(SIGSTOP)?;
                tokio::time::sleep(FREEZE).await;
                process(plane, "kube-apiserver")?.signal(SIGCONT)
            }
            Fault::RestartApiServer => {
                process(plane, "kube-apiserver")?.kill();
                tokio::time::sleep(DOWN).await;
                plane.restart("kube-apiserver", RESTART).await
            }
            Fault::RestartEtcd => plane.restart("etcd", RESTART).await,
        }
    }
}

/// The plane's process `name`.
pub(crate) fn process<'a>(
    plane: &'a mut ControlPlane,
    name: &str,
) -> Result<&'a mut ManagedProcess, Error> {
    let plane_name = plane.name().to_owned();
    plane.process_mut(name).ok_or_else(|| Error::Config {
        message: format!("plane {plane_name} has no process {name}"),
    })
}

/// The replicas rode out a fault by themselves: every one still runs (no crash, no restart)
/// and exactly one of them (admin `ports`) leads.
pub async fn rode_out(
    replicas: &mut [&mut ManagedProcess],
    ports: &[u16],
    timeout: Duration,
) -> Result<(), Error> {
    for replica in replicas.iter_mut() {
        replica.check_running()?;
    }
    crate::wait_one_leader(ports, timeout).await
}

/// The last lines of each replica's log, for a failure message.
pub fn logs<'a>(replicas: impl IntoIterator<Item = &'a ManagedProcess>) -> String {
    replicas
        .into_iter()
        .map(|p| format!("--- {} ---\n{}\n", p.name(), p.log_tail(25)))
        .collect()
}
