//! What the agent tests share: an upstream plane with fleet-controller and a registration
//! token, a downstream plane, agents started against them.

// Each test binary uses a part of this module.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use fleet_api::{Cluster, ClusterRegistrationToken};
use fleet_testkit::binaries::{Tool, ensure};
use fleet_testkit::{ControlPlane, Lifetime, ManagedProcess, apply_crds, eventually, ports};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::PostParams;
use kube::{Api, Client};

pub const NS: &str = "fleet-default";
pub const WAIT: Duration = Duration::from_secs(90);

/// A binary of another package of the workspace, built next to this test's.
pub fn workspace_binary(name: &str) -> PathBuf {
    fleet_testkit::process::workspace_binary(name, name).expect("workspace binary")
}

pub fn yaml<K: serde::de::DeserializeOwned>(text: &str) -> K {
    serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

pub async fn create<K>(client: &Client, text: &str)
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

pub fn spawn(name: &str, binary: &Path, args: Vec<String>, dir: &Path) -> ManagedProcess {
    let mut cmd = Command::new(binary);
    cmd.args(args)
        .env("RUST_LOG", "info,fleet_agent=debug,fleet_controller=debug");
    ManagedProcess::spawn(name, cmd, &dir.join(format!("{name}.log")), Lifetime::Owned)
        .expect("spawn")
}

/// An upstream plane with the controller and a registration token, and a downstream plane.
pub struct Setup {
    pub upstream: ControlPlane,
    pub downstream: ControlPlane,
    pub controller: ManagedProcess,
    pub values_path: PathBuf,
    pub work: tempfile::TempDir,
}

impl Setup {
    pub async fn start() -> Self {
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
        let values_path = work.path().join("values.json");
        fleet_testkit::write_token_values(&up, NS, "token", &values_path, WAIT)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", controller.log_tail(30)));
        Self {
            upstream,
            downstream,
            controller,
            values_path,
            work,
        }
    }

    /// An agent replica in the downstream cluster; returns it and its admin port.
    pub fn agent(&self, name: &str) -> (ManagedProcess, u16) {
        self.agent_with_helm(name, &ensure(Tool::Helm).expect("helm"))
    }

    /// [`Setup::agent`] running `helm` (e.g. a wrapper that records its command lines).
    pub fn agent_with_helm(&self, name: &str, helm: &std::path::Path) -> (ManagedProcess, u16) {
        self.agent_with(name, helm, "2s")
    }

    /// [`Setup::agent`] with its helm and heartbeat interval (a long one: the agent writes only
    /// when there is work).
    pub fn agent_with(
        &self,
        name: &str,
        helm: &std::path::Path,
        heartbeat: &str,
    ) -> (ManagedProcess, u16) {
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
                format!("--heartbeat-interval={heartbeat}"),
                "--drift-interval=1s".to_owned(),
                format!("--helm={}", helm.display()),
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
    pub async fn registered(&self, agent: &ManagedProcess) -> Cluster {
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
pub fn configmap_bundle(bundle: &str, name: &str, greeting: &str) -> String {
    format!(
        "metadata:\n  name: {bundle}\nspec:\n  defaultNamespace: apps\n  resources:\n  - name: cm.yaml\n    content: |\n      apiVersion: v1\n      kind: ConfigMap\n      metadata:\n        name: {name}\n      data:\n        greeting: {greeting}\n  targets:\n  - clusterGroup: default\n"
    )
}
