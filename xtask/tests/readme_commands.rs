//! The README's single-component commands, run as they are written against a fresh control
//! plane with the CRDs installed (what `cargo xtask controlplane up` and `cargo xtask crds
//! --apply` give): each component creates its namespace, leads, serves `/readyz` on its
//! default address, writes logs without colour codes, and stops cleanly on SIGTERM.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use fleet_api::Cluster;
use fleet_testkit::process::workspace_binary;
use fleet_testkit::{ControlPlane, Lifetime, ManagedProcess, apply_crds, wait_for, wait_role};
use kube::Api;

/// The port the components' `/readyz` listens on by default (`--health-bind-address`).
const HEALTH_PORT: u16 = 8081;
const WAIT: Duration = Duration::from_secs(60);

/// The README's `cargo run -p <package> -- <args>` lines for the components that run against
/// one cluster: (package, arguments as the shell would split them, `$KUBECONFIG` expanded).
fn readme_commands(kubeconfig: &Path) -> Vec<(String, Vec<String>)> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("README.md");
    let mut commands = Vec::new();
    for line in readme.lines() {
        let Some(rest) = line.strip_prefix("cargo run -p ") else {
            continue;
        };
        let command = rest.split(" # ").next().unwrap_or_default();
        let (package, args) = command.split_once(" -- ").unwrap_or((command, ""));
        if !["gitjob", "fleet-controller", "helmops"].contains(&package.trim()) {
            continue;
        }
        let args = args
            .split_whitespace()
            .map(|arg| arg.replace("\"$KUBECONFIG\"", &kubeconfig.display().to_string()))
            .collect();
        commands.push((package.trim().to_owned(), args));
    }
    commands
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readmes_component_commands_run_against_a_fresh_plane() {
    let plane = ControlPlane::start().await.expect("control plane");
    let client = plane.client();
    apply_crds(&client, &fleet_api::crds())
        .await
        .expect("CRDs installed");
    let commands = readme_commands(plane.kubeconfig_path());
    let packages: Vec<&str> = commands.iter().map(|(p, _)| p.as_str()).collect();
    for wanted in ["gitjob", "fleet-controller", "helmops"] {
        assert!(
            packages.contains(&wanted),
            "README has no {wanted} command: {packages:?}"
        );
    }
    let logs = tempfile::tempdir().expect("tempdir");
    for (index, (package, args)) in commands.iter().enumerate() {
        let binary = workspace_binary(package, package).expect("binary");
        let mut command = Command::new(binary);
        command.args(args).env_remove("KUBECONFIG");
        let log = logs.path().join(format!("{index}-{package}.log"));
        let mut process = ManagedProcess::spawn(package, command, &log, Lifetime::Owned)
            .expect("the command starts");
        wait_role(HEALTH_PORT, "leader", WAIT)
            .await
            .unwrap_or_else(|e| panic!("{package} {args:?}: {e}\n{}", process.log_tail(30)));
        if package == "fleet-controller" {
            // Its bootstrap: the management cluster in `fleet-local`.
            let clusters: Api<Cluster> = Api::namespaced(client.clone(), "fleet-local");
            wait_for(&clusters, "local", WAIT, |_| true)
                .await
                .unwrap_or_else(|e| panic!("{e}\n{}", process.log_tail(30)));
        }
        let status = process.stop(Duration::from_secs(10));
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            status.is_some_and(|s| s.success()),
            "{package} exits cleanly on SIGTERM ({status:?}):\n{text}"
        );
        assert!(
            !text.contains('\u{1b}'),
            "{package} logs carry colour codes:\n{text}"
        );
        assert!(
            !text.contains("did not stop within the grace period"),
            "{package} stops its work at once:\n{text}"
        );
    }
}
