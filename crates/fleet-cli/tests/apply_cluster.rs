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

/// A Cluster `c1` in group `default` (for `fleet target --clusters`).
const ONE_CLUSTER: &str = "apiVersion: fleet.cattle.io/v1alpha1\nkind: Cluster\nmetadata: {name: c1, namespace: fleet-local}\nspec: {}\n---\napiVersion: fleet.cattle.io/v1alpha1\nkind: ClusterGroup\nmetadata: {name: default, namespace: fleet-local}\nspec: {selector: {}}\n";

/// `fleet args` in `dir` with the pinned helm (and `kubeconfig`, if any).
fn fleet_in(dir: &Path, kubeconfig: Option<&Path>, args: &[&str]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fleet"));
    command.current_dir(dir).env(
        "FLEET_HELM",
        fleet_testkit::binaries::ensure(fleet_testkit::binaries::Tool::Helm).expect("helm"),
    );
    if let Some(kubeconfig) = kubeconfig {
        command.env("KUBECONFIG", kubeconfig);
    }
    command.args(args).output().expect("fleet runs")
}

/// The standard output of `fleet args` in `dir`, which must succeed.
fn fleet_ok(dir: &Path, kubeconfig: Option<&Path>, args: &[&str]) -> String {
    let output = fleet_in(dir, kubeconfig, args);
    assert!(
        output.status.success(),
        "fleet {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `fleet args` in `dir` against `plane`; its standard output.
fn fleet_on(plane: &ControlPlane, dir: &Path, args: &[&str]) -> String {
    fleet_ok(dir, Some(plane.kubeconfig_path()), args)
}

/// A served Helm repository with chart `name` at `version` holding one ConfigMap named
/// `configmap`: the repository, its server (stopped on drop) and its URL.
async fn served_chart(
    name: &str,
    version: &str,
    configmap: &str,
) -> (
    fleet_testkit::helm_repo::HelmRepoDir,
    fleet_testkit::file_server::FileServer,
    String,
) {
    let repo = fleet_testkit::helm_repo::HelmRepoDir::new().expect("helm repo");
    let server = fleet_testkit::file_server::FileServer::start(&repo.root())
        .await
        .expect("file server");
    let url = format!("http://{}", server.address());
    let template = format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {configmap}\n");
    repo.publish(name, version, &[("cm.yaml", &template)], &url)
        .expect("publish");
    (repo, server, url)
}

/// Fleet's `fleet target -b` reads the Clusters of the Bundle's namespace from the cluster of
/// the kubeconfig; `fleet deploy -i` installs what it printed as a Helm release there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_reads_live_clusters_and_deploy_installs_the_release() {
    let plane = ControlPlane::start().await.expect("control plane");
    let client = plane.client();
    apply_crds(&client, &fleet_api::crds()).await.expect("crds");
    for name in ["fleet-default", "apps"] {
        let ns: Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).expect("ns");
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("namespace");
    }
    for (name, env) in [("dev-1", "dev"), ("prod-1", "prod")] {
        let cluster: fleet_api::Cluster = serde_json::from_value(serde_json::json!({
            "apiVersion": "fleet.cattle.io/v1alpha1", "kind": "Cluster",
            "metadata": {"name": name, "namespace": "fleet-default", "labels": {"env": env}},
            "spec": {},
        }))
        .expect("cluster");
        Api::<fleet_api::Cluster>::namespaced(client.clone(), "fleet-default")
            .create(&PostParams::default(), &cluster)
            .await
            .expect("cluster");
    }
    let repo = tempfile::tempdir().expect("tempdir");
    write(
        repo.path(),
        &[
            (
                "app/fleet.yaml",
                "defaultNamespace: apps\ntargets:\n- clusterSelector: {matchLabels: {env: dev}}\n",
            ),
            (
                "app/cm.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: greeting}\ndata: {hello: world}\n",
            ),
        ],
    );
    fleet_on(
        &plane,
        repo.path(),
        &[
            "apply",
            "-n",
            "fleet-default",
            "-o",
            "bundle.yaml",
            "r",
            "app",
        ],
    );
    let targeted = fleet_on(&plane, repo.path(), &["target", "-b", "bundle.yaml"]);
    assert!(targeted.contains("kind: Content"), "{targeted}");
    assert_eq!(
        targeted.matches("kind: BundleDeployment").count(),
        1,
        "{targeted}"
    );
    assert!(
        targeted.contains("fleet.cattle.io/cluster: dev-1"),
        "{targeted}"
    );
    std::fs::write(repo.path().join("dev.yaml"), &targeted).expect("write");

    let deployed = fleet_on(&plane, repo.path(), &["deploy", "-i", "dev.yaml"]);
    assert!(deployed.contains("name: greeting"), "{deployed}");
    let greeting = Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(client.clone(), "apps")
        .get("greeting")
        .await
        .expect("the release's ConfigMap exists");
    assert_eq!(
        greeting
            .data
            .unwrap_or_default()
            .get("hello")
            .map(String::as_str),
        Some("world")
    );

    // A BundleNamespaceMapping opens team-b's clusters to the bundles of fleet-default:
    // `fleet target` follows it, as the controller does.
    let shared: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "team-b", "labels": {"fleet": "shared"}},
    }))
    .expect("ns");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &shared)
        .await
        .expect("namespace");
    let cluster: fleet_api::Cluster = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "dev-2", "namespace": "team-b", "labels": {"env": "dev"}},
        "spec": {},
    }))
    .expect("cluster");
    Api::<fleet_api::Cluster>::namespaced(client.clone(), "team-b")
        .create(&PostParams::default(), &cluster)
        .await
        .expect("cluster");
    let mapping: fleet_api::BundleNamespaceMapping = serde_json::from_value(serde_json::json!({
        "apiVersion": "fleet.cattle.io/v1alpha1", "kind": "BundleNamespaceMapping",
        "metadata": {"name": "share", "namespace": "fleet-default"},
        "bundleSelector": {},
        "namespaceSelector": {"matchLabels": {"fleet": "shared"}},
    }))
    .expect("mapping");
    Api::<fleet_api::BundleNamespaceMapping>::namespaced(client.clone(), "fleet-default")
        .create(&PostParams::default(), &mapping)
        .await
        .expect("mapping");
    let mapped = fleet_on(&plane, repo.path(), &["target", "-b", "bundle.yaml"]);
    assert_eq!(
        mapped.matches("kind: BundleDeployment").count(),
        2,
        "{mapped}"
    );
    assert!(
        mapped.contains("fleet.cattle.io/cluster: dev-2"),
        "{mapped}"
    );
}

/// A chart whose dependency lives in a Helm repository: `fleet apply` fetches it into the
/// Bundle (`Chart.lock` and `charts/<dep>-<version>.tgz`), as Fleet's reader does, so no
/// downstream cluster needs the repository; `disableDependencyUpdate` leaves it out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_dependencies_are_fetched_into_the_bundle() {
    let (_repo, _server, url) = served_chart("redis", "1.2.3", "redis").await;
    let chart = format!(
        "apiVersion: v2\nname: app\nversion: 0.1.0\ndependencies:\n- name: redis\n  version: 1.2.3\n  repository: {url}\n"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        &[
            ("app/Chart.yaml", chart.as_str()),
            (
                "app/templates/cm.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\n",
            ),
            ("off/Chart.yaml", chart.as_str()),
            ("off/fleet.yaml", "helm:\n  disableDependencyUpdate: true\n"),
        ],
    );
    let run = |path: &str| fleet_in(dir.path(), None, &["apply", "-o", "-", "r", path]);
    let fetched = run("app");
    let stdout = String::from_utf8_lossy(&fetched.stdout);
    assert!(
        fetched.status.success(),
        "{}",
        String::from_utf8_lossy(&fetched.stderr)
    );
    assert!(stdout.contains("name: charts/redis-1.2.3.tgz"), "{stdout}");
    assert!(stdout.contains("name: Chart.lock"), "{stdout}");
    assert!(
        !dir.path().join("app/charts").exists(),
        "the repository is left as it is"
    );
    let left = run("off");
    let stdout = String::from_utf8_lossy(&left.stdout);
    assert!(
        left.status.success(),
        "{}",
        String::from_utf8_lossy(&left.stderr)
    );
    assert!(!stdout.contains("charts/redis"), "{stdout}");
}

/// A chart from a Helm repository (`helm.repo` + `helm.chart`) is downloaded into the Bundle
/// when it is built, as Fleet's reader does: what the agent renders comes from the Bundle,
/// with the repository gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repository_charts_are_embedded_in_the_bundle() {
    let (_repo, files, url) = served_chart("web", "2.0.0", "from-the-repo").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let fleet_yaml = format!("helm:\n  repo: {url}\n  chart: web\n  version: 2.0.0\n");
    write(dir.path(), &[("app/fleet.yaml", fleet_yaml.as_str())]);
    std::fs::write(dir.path().join("clusters.yaml"), ONE_CLUSTER).expect("clusters");
    let run = |args: &[&str]| fleet_ok(dir.path(), None, args);
    let bundle = run(&["apply", "-o", "bundle.yaml", "r", "app"]);
    assert!(bundle.is_empty());
    let written = std::fs::read_to_string(dir.path().join("bundle.yaml")).expect("bundle");
    let written: Bundle = serde_saphyr::from_str(&written).expect("a Bundle");
    let embedded = fleet_api::naming::embedded_chart_dir("web", &url, "2.0.0");
    let names: Vec<String> = written
        .spec
        .resources
        .iter()
        .filter_map(|r| r.name.clone())
        .collect();
    assert!(
        names.contains(&format!("{embedded}/web/Chart.yaml")),
        "{names:?}"
    );
    let targets = run(&["target", "-b", "bundle.yaml", "--clusters", "clusters.yaml"]);
    std::fs::write(dir.path().join("targets.yaml"), targets).expect("targets");
    drop(files);
    let rendered = run(&["deploy", "--dry-run", "-i", "targets.yaml"]);
    assert!(rendered.contains("name: from-the-repo"), "{rendered}");
}

/// A chart from a repository that wants basic auth: with `--username`/`--password-file` and a
/// `--helm-repo-url-regex` that matches it, `fleet apply` downloads it; without the regex
/// the credentials are not sent (Fleet's rule) and the download fails, naming the chart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_repository_charts_need_credentials_the_regex_lets_through() {
    let repo = fleet_testkit::helm_repo::HelmRepoDir::new().expect("helm repo");
    let server = fleet_testkit::file_server::FileServer::start_with_basic_auth(
        &repo.root(),
        Some(("fleet", "s3cret")),
    )
    .await
    .expect("file server");
    let url = format!("http://{}", server.address());
    let template = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: private\n";
    repo.publish("private", "1.0.0", &[("cm.yaml", template)], &url)
        .expect("publish");
    let dir = tempfile::tempdir().expect("tempdir");
    let fleet_yaml = format!("helm:\n  repo: {url}\n  chart: private\n  version: 1.0.0\n");
    write(
        dir.path(),
        &[
            ("app/fleet.yaml", fleet_yaml.as_str()),
            ("password", "s3cret\n"),
        ],
    );
    let credentials = ["--username", "fleet", "--password-file", "password"];
    let regex = format!("--helm-repo-url-regex=http://{}", server.address());
    let mut allowed = vec!["apply", "-o", "-"];
    allowed.extend(credentials);
    allowed.extend([regex.as_str(), "r", "app"]);
    let bundle = fleet_ok(dir.path(), None, &allowed);
    assert!(bundle.contains("kind: Bundle"), "{bundle}");

    let mut refused = vec!["apply", "-o", "-"];
    refused.extend(credentials);
    refused.extend(["r", "app"]);
    let output = fleet_in(dir.path(), None, &refused);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "without the regex: {stderr}");
    assert!(stderr.contains("downloading chart private"), "{stderr}");
}

/// In `dir`: the Bundle of `app` (`fleet apply`), then `targets.yaml`, what the cluster of
/// `clusters.yaml` gets of it (`fleet target`), for `fleet deploy -i targets.yaml`.
fn write_targets(dir: &Path) {
    fleet_ok(dir, None, &["apply", "-o", "bundle.yaml", "r", "app"]);
    let targets = fleet_ok(
        dir,
        None,
        &["target", "-b", "bundle.yaml", "--clusters", "clusters.yaml"],
    );
    std::fs::write(dir.join("targets.yaml"), targets).expect("targets");
}

/// A chart in a git repository, addressed as go-getter addresses it (`git::<url>//<dir>?ref=`),
/// is cloned at the reference and embedded in the Bundle, as Fleet's reader downloads it.
#[test]
fn git_charts_are_cloned_into_the_bundle() {
    let charts = fleet_testkit::git::GitRepoFixture::new().expect("git repo");
    charts
        .commit_files(
            "v1",
            &[
                (
                    "charts/web/Chart.yaml",
                    "apiVersion: v2\nname: web\nversion: 1.0.0\n",
                ),
                (
                    "charts/web/templates/cm.yaml",
                    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-git-v1\n",
                ),
            ],
        )
        .expect("commit");
    charts.git(&["tag", "v1"]).expect("tag");
    charts
        .commit_files(
            "v2",
            &[(
                "charts/web/templates/cm.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-git-v2\n",
            )],
        )
        .expect("commit");
    let chart = format!("git::{}//charts/web?ref=v1", charts.file_url());
    let dir = tempfile::tempdir().expect("tempdir");
    let fleet_yaml = format!("helm:\n  chart: {chart}\n");
    write(
        dir.path(),
        &[
            ("app/fleet.yaml", fleet_yaml.as_str()),
            ("clusters.yaml", ONE_CLUSTER),
        ],
    );
    write_targets(dir.path());
    let rendered = fleet_ok(
        dir.path(),
        None,
        &["deploy", "--dry-run", "-i", "targets.yaml"],
    );
    assert!(
        rendered.contains("name: from-git-v1"),
        "the chart at ref v1: {rendered}"
    );
}

/// Charts in git repositories reached over ssh (a real `sshd`): the key of
/// `--ssh-privatekey-file` goes where `--helm-repo-url-regex` matches; with
/// `--helm-credentials-by-path-file`, each bundle takes the entry of its path, else of the
/// first matching pattern, else nothing (Fleet's `setAuthByPath`), so a bundle no entry names
/// cannot clone.
#[tokio::test]
async fn git_charts_over_ssh_take_the_key_of_their_path() {
    use base64::Engine as _;
    let sshd = fleet_testkit::ssh::SshServer::start().await.expect("sshd");
    let charts = fleet_testkit::git::GitRepoFixture::new().expect("git repo");
    charts
        .commit_files(
            "chart",
            &[
                (
                    "charts/web/Chart.yaml",
                    "apiVersion: v2\nname: web\nversion: 1.0.0\n",
                ),
                (
                    "charts/web/templates/cm.yaml",
                    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: over-ssh\n",
                ),
            ],
        )
        .expect("commit");
    let chart = format!("git::{}//charts/web", sshd.url_of(charts.path()));
    let fleet_yaml = format!("helm:\n  chart: {chart}\n");
    let dir = tempfile::tempdir().expect("tempdir");
    let key = base64::engine::general_purpose::STANDARD.encode(sshd.private_key());
    let by_path = format!("apps/a*:\n  sshPrivateKey: {key}\nother:\n  username: u\n");
    write(
        dir.path(),
        &[
            ("apps/alpha/fleet.yaml", fleet_yaml.as_str()),
            ("apps/beta/fleet.yaml", fleet_yaml.as_str()),
            ("key", sshd.private_key()),
            ("by-path.yaml", by_path.as_str()),
        ],
    );
    let regex = "--helm-repo-url-regex=git::ssh://";
    let key_file = ["--ssh-privatekey-file", "key", regex];
    let bundle = fleet_ok(
        dir.path(),
        None,
        &[&["apply", "-o", "-"][..], &key_file, &["r", "apps/alpha"]].concat(),
    );
    assert!(bundle.contains("name: over-ssh"), "{bundle}");

    let without_regex = fleet_in(
        dir.path(),
        None,
        &[
            "apply",
            "-o",
            "-",
            "--ssh-privatekey-file",
            "key",
            "r",
            "apps/alpha",
        ],
    );
    assert!(!without_regex.status.success(), "no regex, no key");

    let by_path = ["--helm-credentials-by-path-file", "by-path.yaml", regex];
    let alpha = fleet_ok(
        dir.path(),
        None,
        &[&["apply", "-o", "-"][..], &by_path, &["r", "apps/alpha"]].concat(),
    );
    assert!(alpha.contains("name: over-ssh"), "{alpha}");
    let beta = fleet_in(
        dir.path(),
        None,
        &[&["apply", "-o", "-"][..], &by_path, &["r", "apps/beta"]].concat(),
    );
    let stderr = String::from_utf8_lossy(&beta.stderr);
    assert!(!beta.status.success(), "beta has no entry: {stderr}");
    assert!(
        stderr.contains("Could not read from remote repository"),
        "{stderr}"
    );
}

/// `fleet deploy --dry-run --kube-version` renders for that Kubernetes version, so a chart's
/// `kubeVersion` constraint is checked against it (Fleet's `--kube-version`).
#[test]
fn deploy_dry_runs_render_for_the_kubernetes_version_given() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        &[
            (
                "app/Chart.yaml",
                "apiVersion: v2\nname: app\nversion: 1.0.0\nkubeVersion: '>=1.99.0-0'\n",
            ),
            (
                "app/templates/cm.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: for-{{ .Capabilities.KubeVersion.Minor }}\n",
            ),
            ("clusters.yaml", ONE_CLUSTER),
        ],
    );
    write_targets(dir.path());
    let refused = fleet_in(
        dir.path(),
        None,
        &["deploy", "--dry-run", "-i", "targets.yaml"],
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "helm's default version is older");
    assert!(stderr.contains("kubeVersion"), "{stderr}");
    let rendered = fleet_ok(
        dir.path(),
        None,
        &[
            "deploy",
            "--dry-run",
            "-i",
            "targets.yaml",
            "--kube-version",
            "1.99.0",
        ],
    );
    assert!(rendered.contains("name: for-99"), "{rendered}");
}
