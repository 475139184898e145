//! What the Cluster roll-ups read of the BundleDeployments placed on a Cluster.
//!
//! Under dynamic shards a replica keeps a second BundleDeployment cache for its Clusters'
//! roll-ups, beside the one for its Bundles. That cache holds [`Placement`]s: the same objects
//! read from the API server as a projection, then cut by [`trim`] to what a roll-up reads:
//! the labels naming the Cluster, GitRepo and HelmOp, the state, and for a BundleDeployment
//! that is not ready, why. No options (1.1 KiB per object even when empty), no spec, no
//! agent status. The replicas pay for this cache and one leader does not, so each byte saved
//! here is saved on the replicas only. Without dynamic shards the roll-ups read the one
//! BundleDeployment cache, projected as they read ([`Placements`]).

use std::sync::Arc;

use fleet_api::labels::{BUNDLE_NAMESPACE, CLUSTER, CLUSTER_NAMESPACE, HELM_OP_NAME, REPO_NAME};
use fleet_api::{
    BundleDeploymentStatus, BundleState, ModifiedStatus, NonReadyStatus, deployment_state,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::reflector::Store;
use serde::Deserialize;

use crate::deployed::Deployed;
use crate::kept_labels::KeptLabels;
use crate::summary::Placed;

/// The labels a roll-up reads: which Cluster (for the change's key), which Bundle namespace,
/// GitRepo and HelmOp.
pub const READ_LABELS: [&str; 5] = [
    CLUSTER,
    CLUSTER_NAMESPACE,
    BUNDLE_NAMESPACE,
    REPO_NAME,
    HELM_OP_NAME,
];

/// A BundleDeployment as a Cluster's roll-up sees it (read from the API server as such, then
/// [`trim`]med).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Placement {
    pub metadata: ObjectMeta,
    /// As read; [`trim`] turns it and `status` into `report` (boxed: 8 bytes once gone).
    #[serde(default)]
    spec: Option<Box<PlacementSpec>>,
    #[serde(default)]
    status: Option<Box<BundleDeploymentStatus>>,
    /// What the roll-up reads of the spec and status.
    #[serde(skip)]
    report: Report,
    /// The labels in [`READ_LABELS`], which [`trim`] takes out of the metadata.
    #[serde(skip)]
    labels: KeptLabels,
}

/// What a roll-up reads of a BundleDeployment's spec: the deployment and the staged one.
#[derive(Clone, Debug, Default, Deserialize)]
struct PlacementSpec {
    #[serde(default, rename = "deploymentID")]
    deployment_id: Option<String>,
    #[serde(default, rename = "stagedDeploymentID")]
    staged_deployment_id: Option<String>,
}

/// A placement's state, and why it is not ready.
#[derive(Clone, Debug)]
struct Report {
    state: BundleState,
    /// Whether its agent has reported on it (it has a status).
    reported: bool,
    /// Only for a placement that is not ready, and only when there is something to say.
    why: Option<Box<NotReady>>,
}

impl Default for Report {
    fn default() -> Self {
        Self {
            state: deployment_state(None, None, None),
            reported: false,
            why: None,
        }
    }
}

/// Why a BundleDeployment is not ready, as a summary lists it.
#[derive(Clone, Debug, Default)]
struct NotReady {
    message: Option<String>,
    non_ready_status: Vec<NonReadyStatus>,
    modified_status: Vec<ModifiedStatus>,
}

crate::deployed::bundle_deployment_projection!(Placement);

impl From<&Deployed> for Placement {
    fn from(bd: &Deployed) -> Self {
        let mut placement = Self {
            metadata: bd.metadata.clone(),
            spec: None,
            status: None,
            labels: KeptLabels::of(&READ_LABELS, |key| Placed::label(bd, key)),
            report: report(
                bd.spec.deployment_id.as_deref(),
                bd.spec.staged_deployment_id.as_deref(),
                bd.status.as_deref(),
            ),
        };
        trim(&mut placement);
        placement
    }
}

/// The report of a BundleDeployment with these deployment ids and status.
fn report(
    deployment_id: Option<&str>,
    staged_deployment_id: Option<&str>,
    status: Option<&BundleDeploymentStatus>,
) -> Report {
    let state = deployment_state(deployment_id, staged_deployment_id, status);
    let why = status
        .filter(|_| state != BundleState::Ready)
        .map(|status| NotReady {
            message: crate::summary::failing_message(&status.conditions).map(str::to_owned),
            non_ready_status: status.non_ready_status.clone(),
            modified_status: status.modified_status.clone(),
        })
        .filter(|why| {
            why.message.is_some()
                || !why.non_ready_status.is_empty()
                || !why.modified_status.is_empty()
        })
        .map(Box::new);
    Report {
        state,
        reported: status.is_some(),
        why,
    }
}

/// Keeps what a roll-up reads: the spec and status as read become the report, and the labels
/// in [`READ_LABELS`] move out of the metadata; of the rest of the metadata, the name,
/// namespace, generation and resourceVersion.
pub fn trim(placement: &mut Placement) {
    if let Some(spec) = placement.spec.take() {
        placement.report = report(
            spec.deployment_id.as_deref(),
            spec.staged_deployment_id.as_deref(),
            placement.status.as_deref(),
        );
    }
    placement.status = None;
    let meta = &mut placement.metadata;
    if let Some(labels) = meta.labels.take() {
        placement.labels = KeptLabels::of(&READ_LABELS, |key| labels.get(key).map(String::as_str));
    }
    meta.annotations = None;
    meta.finalizers = None;
    meta.owner_references = None;
    meta.uid = None;
    meta.creation_timestamp = None;
}

impl Placed for Placement {
    fn state(&self) -> BundleState {
        self.report.state
    }
    fn reported(&self) -> bool {
        self.report.reported
    }
    fn message(&self) -> Option<&str> {
        self.report.why.as_ref()?.message.as_deref()
    }
    fn not_ready(&self) -> (&[NonReadyStatus], &[ModifiedStatus]) {
        self.report.why.as_ref().map_or((&[], &[]), |why| {
            (&why.non_ready_status, &why.modified_status)
        })
    }
    fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key)
    }
}

/// The cache the Cluster roll-ups read.
#[derive(Clone, Debug)]
pub enum Placements {
    /// The BundleDeployment cache itself (without dynamic shards: it holds them all).
    Deployments(Store<Deployed>),
    /// A cache of their projections (under dynamic shards: of this replica's Clusters).
    Projected(Store<Placement>),
}

impl Placements {
    /// The placements in `namespace` (a Cluster's BundleDeployment namespace).
    pub fn in_namespace(&self, namespace: &str) -> Vec<Arc<Placement>> {
        let here = |meta: &ObjectMeta| meta.namespace.as_deref() == Some(namespace);
        match self {
            Self::Deployments(store) => store
                .state()
                .iter()
                .filter(|bd| here(&bd.metadata))
                .map(|bd| Arc::new(Placement::from(bd.as_ref())))
                .collect(),
            Self::Projected(store) => store
                .state()
                .into_iter()
                .filter(|p| here(&p.metadata))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleet_api::{BundleDeployment, BundleDeploymentSpec, Condition};
    use kube::Resource;

    fn deployment(status: Option<BundleDeploymentStatus>) -> BundleDeployment {
        let mut bd = BundleDeployment::new(
            "b",
            BundleDeploymentSpec {
                deployment_id: Some("s-2:o".to_owned()),
                staged_deployment_id: Some("s-2:o".to_owned()),
                ..Default::default()
            },
        );
        bd.status = status;
        bd
    }

    /// The BundleDeployment as the API server serves it, read as a placement by the cache.
    fn served(bd: &BundleDeployment) -> Placement {
        let mut placement: Placement =
            serde_json::from_value(serde_json::to_value(bd).expect("json")).expect("a placement");
        trim(&mut placement);
        placement
    }

    fn reported(applied: &str, ready: bool, non_modified: bool) -> BundleDeploymentStatus {
        BundleDeploymentStatus {
            applied_deployment_id: Some(applied.to_owned()),
            ready,
            non_modified,
            ..Default::default()
        }
    }

    fn failing(message: &str) -> Condition {
        Condition {
            type_: "Ready".to_owned(),
            status: "False".to_owned(),
            message: Some(message.to_owned()),
            ..Default::default()
        }
    }

    #[test]
    fn a_placement_reads_as_its_deployment() {
        let not_ready = BundleDeploymentStatus {
            conditions: vec![failing("pod crashing")],
            non_ready_status: vec![NonReadyStatus::default()],
            ..reported("s-2:o", false, true)
        };
        let cases = [
            (None, BundleState::WaitApplied, None, 0),
            (
                Some(reported("s-1:o", true, true)),
                BundleState::WaitApplied,
                None,
                0,
            ),
            (
                Some(reported("s-2:o", false, true)),
                BundleState::NotReady,
                None,
                0,
            ),
            (
                Some(not_ready),
                BundleState::NotReady,
                Some("pod crashing"),
                1,
            ),
            (
                Some(reported("s-2:o", true, false)),
                BundleState::Modified,
                None,
                0,
            ),
            (
                Some(reported("s-2:o", true, true)),
                BundleState::Ready,
                None,
                0,
            ),
        ];
        for (status, state, message, non_ready) in cases {
            let bd = deployment(status);
            let reported = bd.status.is_some();
            for placement in [Placement::from(&Deployed::from(&bd)), served(&bd)] {
                assert_eq!(Placed::state(&placement), state);
                assert_eq!(placement.reported(), reported);
                assert_eq!(placement.message(), message);
                assert_eq!(placement.not_ready().0.len(), non_ready);
            }
            let cached = Deployed::from(&bd);
            assert_eq!(Placed::state(&cached), state);
            assert_eq!(Placed::message(&cached), message);
        }
    }

    #[test]
    fn a_placement_keeps_only_what_a_rollup_reads() {
        // Ready: nothing of its status is needed but its state.
        let mut bd = deployment(Some(BundleDeploymentStatus {
            conditions: vec![failing("old news")],
            resources: vec![Default::default()],
            ..reported("s-2:o", true, true)
        }));
        for label in [CLUSTER, REPO_NAME, "fleet.cattle.io/commit"] {
            bd.metadata
                .labels
                .get_or_insert_default()
                .insert(label.to_owned(), "x".to_owned());
        }
        bd.metadata.annotations = Some([("a".to_owned(), "b".to_owned())].into());
        bd.metadata.generation = Some(1);
        for placement in [Placement::from(&Deployed::from(&bd)), served(&bd)] {
            let labels: Vec<_> = placement.labels.keys().collect();
            assert_eq!(labels, [CLUSTER, REPO_NAME]);
            assert_eq!(placement.label(CLUSTER), Some("x"));
            assert_eq!(placement.metadata.labels, None, "moved out of the metadata");
            assert_eq!(placement.metadata.annotations, None);
            assert_eq!(placement.metadata.generation, Some(1));
            assert!(placement.spec.is_none() && placement.status.is_none());
            assert!(placement.report.why.is_none());
            assert!(placement.reported());
        }
    }

    #[test]
    fn a_placement_reads_a_bundle_deployment_as_the_api_server_serves_it() {
        let served = serde_json::json!({
            "apiVersion": "fleet.cattle.io/v1alpha1", "kind": "BundleDeployment",
            "metadata": {"name": "b", "namespace": "cluster-x", "generation": 2},
            "spec": {"deploymentID": "s-2:o", "stagedDeploymentID": "s-2:o",
                     "options": {"helm": {"values": {"a": 1}}}},
            "status": {"appliedDeploymentID": "s-2:o", "ready": true, "nonModified": true},
        });
        let mut placement: Placement = serde_json::from_value(served).expect("a placement");
        trim(&mut placement);
        assert_eq!(Placed::state(&placement), BundleState::Ready);
        assert_eq!(Placement::plural(&()), "bundledeployments");
        assert_eq!(Placement::api_version(&()), "fleet.cattle.io/v1alpha1");
    }
}
