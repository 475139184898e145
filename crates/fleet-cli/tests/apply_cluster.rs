//! `fleet apply` without `-o` against a real control plane: creates, updates (only what
//! changed) and prunes the Bundles of a name, as Fleet's `fleet apply` does.

use std::path::Path;
use std::process::Command;

use fleet_api::Bundle;
use fleet_testkit::{ControlPlane, apply_crds};
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::{ListParams, PostParams};

fn write(root: &Path, files: &[(&str, &str)]) {
    for (path, content) in files {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, content).expect("write");
    }
}

fn apply(plane: &ControlPlane, dir: &Path) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_fleet"))
        .current_dir(dir)
        .args([
            "apply",
            "--kubeconfig",
            &plane.kubeconfig_path().display().to_string(),
            "-n",
            "fleet-local",
            "repo",
            "apps/a",
            "apps/b",
        ])
        .output()
        .expect("fleet runs");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stderr}");
    stderr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_creates_updates_and_prunes_bundles() {
    let plane = ControlPlane::start().await.expect("control plane");
    let client = plane.client();
    apply_crds(&client, &fleet_api::crds()).await.expect("crds");
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "fleet-local"}}))
            .expect("ns");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("namespace");
    let repo = tempfile::tempdir().expect("tempdir");
    write(
        repo.path(),
        &[
            ("apps/a/cm.yaml", "kind: ConfigMap\n"),
            ("apps/b/cm.yaml", "kind: ConfigMap\n"),
        ],
    );

    let log = apply(&plane, repo.path());
    assert!(
        log.contains("repo-apps-a created") && log.contains("repo-apps-b created"),
        "{log}"
    );
    let bundles: Api<Bundle> = Api::namespaced(client.clone(), "fleet-local");
    let listed = bundles
        .list(&ListParams::default().labels("fleet.cattle.io/repo-name=repo"))
        .await
        .expect("list");
    assert_eq!(listed.items.len(), 2);

    // Unchanged: no writes; changed: only that Bundle.
    let log = apply(&plane, repo.path());
    assert!(
        log.contains("repo-apps-a unchanged") && log.contains("repo-apps-b unchanged"),
        "{log}"
    );
    write(
        repo.path(),
        &[("apps/a/cm.yaml", "kind: ConfigMap\ndata: {k: v}\n")],
    );
    let log = apply(&plane, repo.path());
    assert!(
        log.contains("repo-apps-a updated") && log.contains("repo-apps-b unchanged"),
        "{log}"
    );

    // A directory that is gone prunes its Bundle.
    std::fs::remove_dir_all(repo.path().join("apps/b")).expect("rm");
    std::fs::create_dir_all(repo.path().join("apps/b")).expect("empty dir");
    let log = apply(&plane, repo.path());
    assert!(log.contains("repo-apps-b deleted"), "{log}");
}
