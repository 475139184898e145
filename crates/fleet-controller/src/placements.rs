//! What the Cluster roll-ups read of the BundleDeployments placed on a Cluster.
//!
//! Under dynamic shards a replica keeps a second BundleDeployment cache for its Clusters'
//! roll-ups, beside the one for its Bundles. That cache holds [`Placement`]s: the same objects
//! read from the API server as a projection (no options, which take 1.1 KiB per object even
//! when empty, and only the labels a roll-up reads), about half the bytes of a
//! BundleDeployment each. Without dynamic shards the roll-ups read the one BundleDeployment
//! cache, projected as they read ([`Placements`]).

use std::borrow::Cow;
use std::sync::Arc;

use fleet_api::labels::{BUNDLE_NAMESPACE, CLUSTER, CLUSTER_NAMESPACE, HELM_OP_NAME, REPO_NAME};
use fleet_api::{BundleDeployment, BundleDeploymentStatus, BundleState, deployment_state};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::runtime::reflector::Store;
use serde::Deserialize;

/// The labels a roll-up reads: which Cluster (for the change's key), which Bundle namespace,
/// GitRepo and HelmOp.
const READ_LABELS: [&str; 5] = [
    CLUSTER,
    CLUSTER_NAMESPACE,
    BUNDLE_NAMESPACE,
    REPO_NAME,
    HELM_OP_NAME,
];

/// A BundleDeployment as a Cluster's roll-up sees it (read from the API server as such).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Placement {
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: PlacementSpec,
    #[serde(default)]
    pub status: Option<BundleDeploymentStatus>,
}

/// What a roll-up reads of a BundleDeployment's spec: the deployment and the staged one.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct PlacementSpec {
    #[serde(default, rename = "deploymentID")]
    pub deployment_id: Option<String>,
    #[serde(default, rename = "stagedDeploymentID")]
    pub staged_deployment_id: Option<String>,
}

impl Resource for Placement {
    type DynamicType = ();
    type Scope = k8s_openapi::NamespaceResourceScope;

    fn kind(dt: &()) -> Cow<'_, str> {
        BundleDeployment::kind(dt)
    }
    fn group(dt: &()) -> Cow<'_, str> {
        BundleDeployment::group(dt)
    }
    fn version(dt: &()) -> Cow<'_, str> {
        BundleDeployment::version(dt)
    }
    fn plural(dt: &()) -> Cow<'_, str> {
        BundleDeployment::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl From<&BundleDeployment> for Placement {
    fn from(bd: &BundleDeployment) -> Self {
        let mut placement = Self {
            metadata: bd.metadata.clone(),
            spec: PlacementSpec {
                deployment_id: bd.spec.deployment_id.clone(),
                staged_deployment_id: bd.spec.staged_deployment_id.clone(),
            },
            status: bd.status.clone(),
        };
        trim(&mut placement);
        placement
    }
}

/// Drops what no roll-up reads: the agent's list of deployed resources, the labels but
/// [`READ_LABELS`], annotations, finalizers, owners, uid and creation time.
pub fn trim(placement: &mut Placement) {
    if let Some(status) = &mut placement.status {
        status.resources = Vec::new();
    }
    let meta = &mut placement.metadata;
    if let Some(labels) = &mut meta.labels {
        labels.retain(|key, _| READ_LABELS.contains(&key.as_str()));
    }
    meta.annotations = None;
    meta.finalizers = None;
    meta.owner_references = None;
    meta.uid = None;
    meta.creation_timestamp = None;
}

/// What the roll-ups read, of a BundleDeployment or of its [`Placement`].
pub trait Placed: Resource<DynamicType = ()> {
    /// Fleet's deployment state.
    fn state(&self) -> BundleState;
    /// What the agent reported.
    fn status(&self) -> Option<&BundleDeploymentStatus>;
}

impl Placed for BundleDeployment {
    fn state(&self) -> BundleState {
        BundleDeployment::state(self)
    }
    fn status(&self) -> Option<&BundleDeploymentStatus> {
        self.status.as_ref()
    }
}

impl Placed for Placement {
    fn state(&self) -> BundleState {
        deployment_state(
            self.spec.deployment_id.as_deref(),
            self.spec.staged_deployment_id.as_deref(),
            self.status.as_ref(),
        )
    }
    fn status(&self) -> Option<&BundleDeploymentStatus> {
        self.status.as_ref()
    }
}

/// The cache the Cluster roll-ups read.
#[derive(Clone, Debug)]
pub enum Placements {
    /// The BundleDeployment cache itself (without dynamic shards: it holds them all).
    Deployments(Store<BundleDeployment>),
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
    use fleet_api::BundleDeploymentSpec;

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

    #[test]
    fn a_placement_is_in_the_state_of_its_deployment() {
        let reported = |applied: &str, ready: bool, non_modified: bool| {
            Some(BundleDeploymentStatus {
                applied_deployment_id: Some(applied.to_owned()),
                ready,
                non_modified,
                ..Default::default()
            })
        };
        let cases = [
            (None, BundleState::WaitApplied),
            (reported("s-1:o", true, true), BundleState::WaitApplied),
            (reported("s-2:o", false, true), BundleState::NotReady),
            (reported("s-2:o", true, false), BundleState::Modified),
            (reported("s-2:o", true, true), BundleState::Ready),
        ];
        for (status, state) in cases {
            let bd = deployment(status);
            assert_eq!(Placed::state(&Placement::from(&bd)), state);
            assert_eq!(bd.state(), state);
        }
    }

    #[test]
    fn a_placement_keeps_only_what_a_rollup_reads() {
        let mut bd = deployment(Some(BundleDeploymentStatus {
            resources: vec![Default::default()],
            ..Default::default()
        }));
        for label in [CLUSTER, REPO_NAME, "fleet.cattle.io/commit"] {
            bd.metadata
                .labels
                .get_or_insert_default()
                .insert(label.to_owned(), "x".to_owned());
        }
        bd.metadata.annotations = Some([("a".to_owned(), "b".to_owned())].into());
        bd.metadata.generation = Some(1);
        let placement = Placement::from(&bd);
        let labels: Vec<&String> = placement
            .metadata
            .labels
            .iter()
            .flatten()
            .map(|l| l.0)
            .collect();
        assert_eq!(labels, [CLUSTER, REPO_NAME]);
        assert_eq!(placement.metadata.annotations, None);
        assert_eq!(placement.metadata.generation, Some(1));
        assert!(placement.status.is_some_and(|s| s.resources.is_empty()));
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
        let placement: Placement = serde_json::from_value(served).expect("a placement");
        assert_eq!(Placed::state(&placement), BundleState::Ready);
        assert_eq!(Placement::plural(&()), "bundledeployments");
        assert_eq!(Placement::api_version(&()), "fleet.cattle.io/v1alpha1");
    }
}
