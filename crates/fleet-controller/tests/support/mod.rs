//! What the controller tests share: a control plane with Fleet's CRDs and the workspace
//! namespace, controller processes, objects from YAML.

// Each test binary uses a part of this module.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use fleet_api::BundleDeployment;
use fleet_api::naming::cluster_namespace;
use fleet_testkit::{ControlPlane, Lifetime, ManagedProcess, ports};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde::de::DeserializeOwned;

pub const NS: &str = "fleet-default";
pub const WAIT: Duration = Duration::from_secs(60);

pub async fn plane() -> ControlPlane {
    fleet_testkit::plane_with(&fleet_api::crds(), NS)
        .await
        .expect("control plane")
}

pub fn yaml<K: DeserializeOwned>(text: &str) -> K {
    serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// Creates an object of a namespaced kind in `NS`.
pub async fn create<K>(client: &Client, text: &str) -> K
where
    K: kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::Serialize
        + DeserializeOwned,
{
    Api::<K>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &yaml(text))
        .await
        .unwrap_or_else(|e| panic!("create: {e}\n{text}"))
}

/// One controller replica, killed on drop.
pub struct Controller {
    pub process: ManagedProcess,
    pub admin_port: u16,
}

impl Controller {
    pub fn start(plane: &ControlPlane, identity: &str, dir: &Path) -> Self {
        Self::start_with(plane, identity, dir, &[])
    }

    /// [`Controller::start`] with more flags.
    pub fn start_with(plane: &ControlPlane, identity: &str, dir: &Path, extra: &[String]) -> Self {
        let admin_port = ports::free_port().expect("port");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_fleet-controller"));
        cmd.args([
            format!("--kubeconfig={}", plane.kubeconfig_path().display()),
            "--namespace=default".to_owned(),
            format!("--metrics-bind-address=127.0.0.1:{admin_port}"),
            format!("--health-bind-address=127.0.0.1:{admin_port}"),
            format!("--election-identity={identity}"),
            "--election-lease-duration=3s".to_owned(),
            "--election-renew-deadline=2s".to_owned(),
            "--election-retry-period=500ms".to_owned(),
            format!("--api-server-url={}", plane.server()),
        ])
        .args(extra)
        .env("RUST_LOG", "info,fleet_controller=debug");
        let log = dir.join(format!("{identity}.log"));
        let process =
            ManagedProcess::spawn(identity, cmd, &log, Lifetime::Owned).expect("spawn controller");
        Self {
            process,
            admin_port,
        }
    }

    /// Waits until this replica reports `role` on `/readyz`.
    pub async fn wait_role(&self, role: &str) {
        fleet_testkit::wait_role(self.admin_port, role, WAIT)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", self.process.log_tail(30)));
    }

    /// The value of a metric series of this replica.
    pub async fn metric(&self, series: &str) -> f64 {
        fleet_testkit::metric(self.admin_port, series).await
    }
}

/// The BundleDeployments in the namespace of Cluster `cluster` of `NS`.
pub fn bds(client: &Client, cluster: &str) -> Api<BundleDeployment> {
    Api::namespaced(client.clone(), &cluster_namespace(NS, cluster))
}

/// What an agent reports once it deployed a BundleDeployment.
pub async fn report_deployed(client: &Client, bd: &BundleDeployment) {
    let api: Api<BundleDeployment> =
        Api::namespaced(client.clone(), &bd.namespace().unwrap_or_default());
    let status = serde_json::json!({"status": {
        "appliedDeploymentID": bd.spec.deployment_id,
        "ready": true,
        "nonModified": true,
    }});
    api.patch_status(
        &bd.name_any(),
        &PatchParams::default(),
        &Patch::Merge(status),
    )
    .await
    .expect("bd status");
}

/// Waits until `count` BundleDeployments exist across the cluster namespaces.
pub async fn wait_bds(client: &Client, count: usize) {
    let all: Api<BundleDeployment> = Api::all(client.clone());
    fleet_testkit::eventually("the fan-out", WAIT, Duration::from_millis(200), || async {
        let n = all
            .list(&Default::default())
            .await
            .map_err(|e| e.to_string())?
            .items
            .len();
        if n == count {
            Ok(())
        } else {
            Err(format!("{n}/{count}"))
        }
    })
    .await
    .expect("fan-out complete");
}

/// A Bundle `name` (no resources) for the cluster group `default`.
pub fn bundle(name: &str) -> String {
    format!("metadata:\n  name: {name}\nspec:\n  targets:\n  - clusterGroup: default\n")
}

/// Clusters `c0`..`c<n-1>` in `NS` and the ClusterGroup `default` selecting them all.
pub async fn clusters_in_default_group(client: &Client, n: usize) {
    for i in 0..n {
        create::<fleet_api::Cluster>(client, &format!("metadata:\n  name: c{i}\nspec: {{}}\n"))
            .await;
    }
    create::<fleet_api::ClusterGroup>(
        client,
        "metadata:\n  name: default\nspec:\n  selector: {}\n",
    )
    .await;
}

/// Waits until the roll-ups of the Clusters of `NS` (by name) count `want` BundleDeployments.
pub async fn wait_rollups_of(client: &Client, want: &[i64]) {
    let clusters: Api<fleet_api::Cluster> = Api::namespaced(client.clone(), NS);
    fleet_testkit::eventually("the cluster roll-ups", WAIT, WAIT / 100, || async {
        let counted: Vec<i64> = clusters
            .list(&Default::default())
            .await
            .map_err(|e| e.to_string())?
            .items
            .iter()
            .map(|c| c.status.as_ref().map_or(0, |s| s.summary.desired_ready))
            .collect();
        if counted == want {
            Ok(())
        } else {
            Err(format!("{counted:?}, want {want:?}"))
        }
    })
    .await
    .expect("every cluster rolled up");
}
