//! What the gitjob tests share: a control plane with Fleet's CRDs, gitjob processes, and
//! reading their metrics.

// Each test binary uses a part of this module.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use fleet_api::{Bundle, GitRepo};
use fleet_testkit::{ControlPlane, Lifetime, ManagedProcess, ports};
use kube::{Api, Client};

pub const NS: &str = "fleet-local";
pub const WAIT: Duration = Duration::from_secs(60);

/// A control plane with the CRDs and the GitRepo namespace.
pub async fn plane() -> ControlPlane {
    fleet_testkit::plane_with(&fleet_api::crds(), NS)
        .await
        .expect("control plane")
}

/// One gitjob replica, killed on drop.
pub struct Gitjob {
    pub process: ManagedProcess,
    pub admin_port: u16,
    pub webhook_port: u16,
}

impl Gitjob {
    pub fn start(plane: &ControlPlane, identity: &str, dir: &Path) -> Self {
        Self::start_with(plane, identity, dir, &[])
    }

    /// [`Gitjob::start`] with more flags.
    pub fn start_with(plane: &ControlPlane, identity: &str, dir: &Path, extra: &[&str]) -> Self {
        let [admin_port, webhook_port] = ports::free_ports::<2>().expect("ports");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gitjob"));
        cmd.args([
            format!("--kubeconfig={}", plane.kubeconfig_path().display()),
            "--namespace=default".to_owned(),
            format!("--metrics-bind-address=127.0.0.1:{admin_port}"),
            format!("--health-bind-address=127.0.0.1:{admin_port}"),
            format!("--webhook-bind-address=127.0.0.1:{webhook_port}"),
            format!("--cache-dir={}", dir.join(identity).display()),
            format!("--election-identity={identity}"),
            "--election-lease-duration=3s".to_owned(),
            "--election-renew-deadline=2s".to_owned(),
            "--election-retry-period=500ms".to_owned(),
        ])
        .args(extra)
        .env("RUST_LOG", "info,gitjob=debug");
        let log = dir.join(format!("{identity}.log"));
        let process =
            ManagedProcess::spawn(identity, cmd, &log, Lifetime::Owned).expect("spawn gitjob");
        Self {
            process,
            admin_port,
            webhook_port,
        }
    }

    /// The value of a metric series of this replica.
    pub async fn metric(&self, series: &str) -> f64 {
        fleet_testkit::metric(self.admin_port, series).await
    }

    /// Waits until this replica reports `role` on `/readyz`.
    pub async fn wait_role(&self, role: &str) {
        fleet_testkit::wait_role(self.admin_port, role, WAIT)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", self.process.log_tail(30)));
    }
}

/// A GitRepo from YAML, as a user writes it.
pub fn gitrepo(yaml: &str) -> GitRepo {
    serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

pub fn gitrepos(client: &Client) -> Api<GitRepo> {
    Api::namespaced(client.clone(), NS)
}

pub fn bundles(client: &Client) -> Api<Bundle> {
    Api::namespaced(client.clone(), NS)
}

/// The Bundle's `fleet.cattle.io/commit` label.
pub fn commit_of(bundle: &Bundle) -> Option<&str> {
    bundle
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(fleet_api::labels::COMMIT))
        .map(String::as_str)
}

/// The message of the GitRepo's Stalled condition when it is True (gitjob's failed sync;
/// `Ready` is the controller's, which these tests do not run).
pub fn stalled_message(gitrepo: &GitRepo) -> Option<String> {
    gitrepo.status.as_ref().and_then(|s| {
        s.base
            .conditions
            .iter()
            .find(|c| c.type_ == "Stalled" && c.status == "True")
            .and_then(|c| c.message.clone())
    })
}

/// A ConfigMap manifest.
pub fn configmap(name: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n")
}

/// Commits `cm.yaml` with a ConfigMap named `name`; returns the commit.
pub fn commit_configmap(
    repo: &fleet_testkit::git::GitRepoFixture,
    message: &str,
    name: &str,
) -> String {
    repo.commit_files(message, &[("cm.yaml", &configmap(name))])
        .expect("commit")
}
