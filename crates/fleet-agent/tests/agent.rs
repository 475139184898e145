//! fleet-agent with fleet-controller on two real control planes (upstream and downstream):
//! the agent registers with a token, a Bundle reaches the downstream cluster as a Helm
//! release through the controller and the agent, its status rolls up, a change is applied,
//! a chart that fails keeps the old release and reports ErrApplied, and a deleted Bundle is
//! uninstalled.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use fleet_api::{Bundle, Cluster, ClusterRegistrationToken};
use fleet_testkit::binaries::{Tool, ensure};
use fleet_testkit::{
    ControlPlane, Lifetime, ManagedProcess, apply_crds, eventually, ports, wait_deleted, wait_for,
};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};

const NS: &str = "fleet-default";
const WAIT: Duration = Duration::from_secs(90);

/// A binary of another package of the workspace, built next to this test's.
fn workspace_binary(name: &str) -> PathBuf {
    let deps = std::env::current_exe().expect("test exe");
    let dir = deps.parent().and_then(Path::parent).expect("target dir");
    let path = dir.join(name);
    if !path.exists() {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--quiet", "-p", name, "--bin", name])
            .status()
            .expect("cargo build");
        assert!(status.success(), "building {name}");
    }
    path
}

fn yaml<K: serde::de::DeserializeOwned>(text: &str) -> K {
    serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

async fn create<K>(client: &Client, text: &str)
where
    K: kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::Serialize
        + serde::de::DeserializeOwned,
{
    Api::<K>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &yaml(text))
        .await
        .unwrap_or_else(|e| panic!("create: {e}\n{text}"));
}

fn spawn(name: &str, binary: &Path, args: Vec<String>, dir: &Path) -> ManagedProcess {
    let mut cmd = Command::new(binary);
    cmd.args(args)
        .env("RUST_LOG", "info,fleet_agent=debug,fleet_controller=debug");
    ManagedProcess::spawn(name, cmd, &dir.join(format!("{name}.log")), Lifetime::Owned)
        .expect("spawn")
}

/// An upstream plane with the controller and a registration token, and a downstream plane.
struct Setup {
    upstream: ControlPlane,
    downstream: ControlPlane,
    controller: ManagedProcess,
    values_path: PathBuf,
    work: tempfile::TempDir,
}

impl Setup {
    async fn start() -> Self {
        let upstream = ControlPlane::start().await.expect("upstream");
        let downstream = ControlPlane::builder()
            .name("downstream")
            .start()
            .await
            .expect("downstream");
        let up = upstream.client();
        apply_crds(&up, &fleet_api::crds()).await.expect("crds");
        let ns: Namespace = yaml(&format!("metadata:\n  name: {NS}\n"));
        Api::<Namespace>::all(up.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("ns");
        let work = tempfile::tempdir().expect("tempdir");
        let controller_port = ports::free_port().expect("port");
        let controller = spawn(
            "controller",
            &workspace_binary("fleet-controller"),
            vec![
                format!("--kubeconfig={}", upstream.kubeconfig_path().display()),
                "--namespace=default".to_owned(),
                format!("--metrics-bind-address=127.0.0.1:{controller_port}"),
                format!("--health-bind-address=127.0.0.1:{controller_port}"),
                format!("--api-server-url={}", upstream.server()),
                format!("--api-server-ca-file={}", upstream.ca_cert_path().display()),
            ],
            work.path(),
        );
        // Registration: the token's values are all an agent gets.
        create::<ClusterRegistrationToken>(&up, "metadata:\n  name: token\nspec:\n  ttl: 1h\n")
            .await;
        let values = wait_for(
            &Api::<Secret>::namespaced(up.clone(), NS),
            "token",
            WAIT,
            |_| true,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", controller.log_tail(30)));
        let values_path = work.path().join("values.json");
        let raw = values
            .data
            .as_ref()
            .and_then(|d| d.get("values"))
            .expect("values")
            .0
            .clone();
        std::fs::write(&values_path, raw).expect("write values");
        Self {
            upstream,
            downstream,
            controller,
            values_path,
            work,
        }
    }

    /// An agent replica in the downstream cluster; returns it and its admin port.
    fn agent(&self, name: &str) -> (ManagedProcess, u16) {
        let port = ports::free_port().expect("port");
        let agent = spawn(
            name,
            &workspace_binary("fleet-agent"),
            vec![
                format!(
                    "--kubeconfig={}",
                    self.downstream.kubeconfig_path().display()
                ),
                "--namespace=default".to_owned(),
                format!("--metrics-bind-address=127.0.0.1:{port}"),
                format!("--health-bind-address=127.0.0.1:{port}"),
                format!("--registration-values={}", self.values_path.display()),
                format!("--election-identity={name}"),
                "--election-lease-duration=3s".to_owned(),
                "--election-renew-deadline=2s".to_owned(),
                "--election-retry-period=500ms".to_owned(),
                "--heartbeat-interval=2s".to_owned(),
                "--drift-interval=1s".to_owned(),
                format!("--helm={}", ensure(Tool::Helm).expect("helm").display()),
                format!(
                    "--kustomize={}",
                    ensure(Tool::Kustomize).expect("kustomize").display()
                ),
            ],
            self.work.path(),
        );
        (agent, port)
    }

    /// The Cluster the agent registered, once it has checked in.
    async fn registered(&self, agent: &ManagedProcess) -> Cluster {
        let clusters: Api<Cluster> = Api::namespaced(self.upstream.client(), NS);
        eventually(
            "the agent registered and checks in",
            WAIT,
            Duration::from_millis(200),
            || async {
                let list = clusters
                    .list(&Default::default())
                    .await
                    .map_err(|e| e.to_string())?;
                list.items
                    .into_iter()
                    .find(|c| {
                        c.status
                            .as_ref()
                            .is_some_and(|s| s.agent.last_seen.is_some())
                    })
                    .ok_or_else(|| "no cluster has checked in".to_owned())
            },
        )
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{e}\n{}\n{}",
                agent.log_tail(30),
                self.controller.log_tail(20)
            )
        })
    }
}

/// A Bundle with one ConfigMap `name` (data `greeting`) in namespace `apps`, for every cluster.
fn configmap_bundle(bundle: &str, name: &str, greeting: &str) -> String {
    format!(
        "metadata:\n  name: {bundle}\nspec:\n  defaultNamespace: apps\n  resources:\n  - name: cm.yaml\n    content: |\n      apiVersion: v1\n      kind: ConfigMap\n      metadata:\n        name: {name}\n      data:\n        greeting: {greeting}\n  targets:\n  - clusterGroup: default\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundles_reach_a_registered_downstream_cluster_as_helm_releases() {
    let setup = Setup::start().await;
    let (up, down) = (setup.upstream.client(), setup.downstream.client());
    let controller = &setup.controller;
    let (agent, _) = setup.agent("agent");
    let clusters: Api<Cluster> = Api::namespaced(up.clone(), NS);
    let cluster = setup.registered(&agent).await;

    create::<fleet_api::ClusterGroup>(&up, "metadata:\n  name: default\nspec:\n  selector: {}\n")
        .await;
    create::<Bundle>(&up, &configmap_bundle("plain", "hello", "hi")).await;
    let configmaps: Api<ConfigMap> = Api::namespaced(down.clone(), "apps");
    wait_for(&configmaps, "hello", WAIT, |c| {
        c.data
            .as_ref()
            .and_then(|d| d.get("greeting"))
            .map(String::as_str)
            == Some("hi")
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", agent.log_tail(40)));
    let release_secrets = Api::<Secret>::namespaced(down.clone(), "apps")
        .list(&kube::api::ListParams::default().labels("owner=helm,name=plain"))
        .await
        .expect("list");
    assert!(
        !release_secrets.items.is_empty(),
        "a Helm release named after the bundle"
    );
    let bundles: Api<Bundle> = Api::namespaced(up.clone(), NS);
    wait_for(&bundles, "plain", WAIT, |b| {
        b.status.as_ref().is_some_and(|s| s.summary.ready == 1)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", controller.log_tail(30)));
    wait_for(&clusters, &cluster.name_any(), WAIT, |c| {
        c.status.as_ref().is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
    })
    .await
    .expect("cluster ready: agent alive, bundles ready");

    // Drift: an object edited by hand shows as Modified; with correctDrift it is put back.
    let edit = |value: &'static str| Patch::Merge(serde_json::json!({"data": {"greeting": value}}));
    configmaps
        .patch("hello", &PatchParams::default(), &edit("edited by hand"))
        .await
        .expect("edit");
    wait_for(&bundles, "plain", WAIT, |b| {
        b.status.as_ref().is_some_and(|s| s.summary.modified == 1)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", agent.log_tail(40)));
    let mut corrected = configmap_bundle("corrected", "guarded", "original");
    corrected.push_str("  correctDrift:\n    enabled: true\n");
    create::<Bundle>(&up, &corrected).await;
    let original = |c: &ConfigMap| {
        c.data
            .as_ref()
            .and_then(|d| d.get("greeting"))
            .map(String::as_str)
            == Some("original")
    };
    wait_for(&configmaps, "guarded", WAIT, original)
        .await
        .expect("deployed");
    configmaps
        .patch("guarded", &PatchParams::default(), &edit("edited by hand"))
        .await
        .expect("edit");
    wait_for(&configmaps, "guarded", WAIT, |c| {
        c.data
            .as_ref()
            .and_then(|d| d.get("greeting"))
            .map(String::as_str)
            == Some("edited by hand")
    })
    .await
    .expect("edit seen");
    wait_for(&configmaps, "guarded", WAIT, original)
        .await
        .unwrap_or_else(|e| panic!("drift corrected: {e}\n{}", agent.log_tail(40)));

    // A change is applied.
    bundles
        .patch(
            "plain",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"resources": [{"name": "cm.yaml", "content": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: hello\ndata:\n  greeting: hello again\n"}]}})),
        )
        .await
        .expect("change");
    wait_for(&configmaps, "hello", WAIT, |c| {
        c.data
            .as_ref()
            .and_then(|d| d.get("greeting"))
            .map(String::as_str)
            == Some("hello again")
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", agent.log_tail(40)));

    // A chart that does not render: ErrApplied with helm's message; the release stays.
    bundles
        .patch(
            "plain",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"resources": [
                {"name": "Chart.yaml", "content": "apiVersion: v2\nname: broken\nversion: 0.1.0\n"},
                {"name": "templates/cm.yaml", "content": "kind: ConfigMap\ndata: {{ .Values.x | nosuchfunction }}\n"},
            ]}})),
        )
        .await
        .expect("break");
    wait_for(&bundles, "plain", WAIT, |b| {
        b.status
            .as_ref()
            .is_some_and(|s| s.summary.err_applied == 1)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", agent.log_tail(40)));
    let bundle = bundles.get("plain").await.expect("bundle");
    let message = bundle
        .status
        .and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "Ready"))
        .and_then(|c| c.message)
        .unwrap_or_default();
    assert!(
        message.contains("nosuchfunction"),
        "helm's message reaches the Bundle: {message}"
    );
    configmaps
        .get("hello")
        .await
        .expect("the previous release keeps running");

    // Deleting the Bundle uninstalls the release downstream.
    bundles
        .delete("plain", &Default::default())
        .await
        .expect("delete");
    wait_deleted(&configmaps, "hello", WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", agent.log_tail(40)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leading_agent_deploys_and_a_standby_takes_over_with_the_saved_credentials() {
    let setup = Setup::start().await;
    let (up, down) = (setup.upstream.client(), setup.downstream.client());
    let (mut a, a_port) = setup.agent("agent-a");
    fleet_testkit::wait_role(a_port, "leader", WAIT)
        .await
        .expect("a leads");
    let (b, b_port) = setup.agent("agent-b");
    fleet_testkit::wait_role(b_port, "standby", WAIT)
        .await
        .expect("b stands by");
    setup.registered(&a).await;
    create::<fleet_api::ClusterGroup>(&up, "metadata:\n  name: default\nspec:\n  selector: {}\n")
        .await;
    create::<Bundle>(&up, &configmap_bundle("one", "first", "a")).await;
    let configmaps: Api<ConfigMap> = Api::namespaced(down.clone(), "apps");
    wait_for(&configmaps, "first", WAIT, |_| true)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", a.log_tail(30)));

    a.kill();
    fleet_testkit::wait_role(b_port, "leader", WAIT)
        .await
        .expect("b takes over");
    create::<Bundle>(&up, &configmap_bundle("two", "second", "b")).await;
    wait_for(&configmaps, "second", WAIT, |_| true)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", b.log_tail(30)));
    let clusters = Api::<Cluster>::namespaced(up.clone(), NS)
        .list(&Default::default())
        .await
        .expect("list");
    assert_eq!(
        clusters.items.len(),
        1,
        "the standby reused the saved credentials: one registration"
    );
}
