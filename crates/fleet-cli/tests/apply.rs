//! `fleet apply -o -` on a repository tree, as a user runs it.

use std::process::Command;

fn write(root: &std::path::Path, files: &[(&str, &str)]) {
    for (path, content) in files {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, content).expect("write");
    }
}

#[test]
fn apply_prints_one_bundle_per_discovered_directory() {
    let repo = tempfile::tempdir().expect("tempdir");
    write(
        repo.path(),
        &[
            (
                "multi-cluster/hello-world/deploy.yaml",
                "kind: Deployment\n",
            ),
            (
                "multi-cluster/hello-world/fleet.yaml",
                "defaultNamespace: hello\n",
            ),
            (
                "multi-cluster/hello-world/dev/fleet.yaml",
                "name: hello-dev\n",
            ),
            ("multi-cluster/hello-world/dev/cm.yaml", "kind: ConfigMap\n"),
        ],
    );
    let output = Command::new(env!("CARGO_BIN_EXE_fleet"))
        .current_dir(repo.path())
        .env("COMMIT", "abc123")
        .args([
            "apply",
            "-o",
            "-",
            "--label",
            "team=web",
            "one",
            "multi-cluster/hello-world",
        ])
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let bundles: Vec<fleet_api::Bundle> =
        serde_saphyr::from_str_multiple(&stdout).unwrap_or_else(|e| panic!("{e}\n{stdout}"));
    let names: Vec<_> = bundles
        .iter()
        .filter_map(|b| b.metadata.name.as_deref())
        .collect();
    assert_eq!(names, ["one-multi-cluster-hello-world", "hello-dev"]);
    let labels = bundles[0].metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels["fleet.cattle.io/commit"], "abc123");
    assert_eq!(labels["team"], "web");
    assert_eq!(
        bundles[0].spec.options.default_namespace.as_deref(),
        Some("hello")
    );
    assert_eq!(
        bundles[0].metadata.namespace.as_deref(),
        Some("fleet-local")
    );
}

#[test]
fn a_broken_fleet_yaml_fails_with_file_and_line_and_writes_nothing() {
    let repo = tempfile::tempdir().expect("tempdir");
    write(
        repo.path(),
        &[
            ("app/fleet.yaml", "helm:\n  timeoutSeconds: soon\n"),
            ("ok/a.yaml", "x: 1\n"),
        ],
    );
    let out_file = repo.path().join("out.yaml");
    let output = Command::new(env!("CARGO_BIN_EXE_fleet"))
        .current_dir(repo.path())
        .args(["apply", "-o", "out.yaml", "one", "ok", "app"])
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("fleet.yaml:2"), "{stderr}");
    assert!(!out_file.exists(), "nothing written");
    let missing = Command::new(env!("CARGO_BIN_EXE_fleet"))
        .current_dir(repo.path())
        .args(["apply", "-o", "-", "one", "does-not-exist"])
        .output()
        .expect("runs");
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("does-not-exist"));
}
