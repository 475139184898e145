//! What the Bundle work reads of a BundleDeployment: a [`Deployed`].
//!
//! The controller caches a BundleDeployment per Bundle and targeted cluster, so its size is
//! the controller's memory. The cache reads them from the API server as this projection and
//! [`trim`] cuts each to what the Bundle reconciles, their status and the GitRepo and HelmOp
//! roll-ups read: no staged options (their id says what is staged), no other spec field but
//! the deployment ids, the options ([`KeptOptions`]: shared JSON; a paused or held-back
//! target keeps them) and whether a HelmOp's chart is deployed; the labels naming the
//! Bundle, Cluster, GitRepo and HelmOp; the content hash the controller stamped instead of
//! the annotations; the agent's status without its list of resources.

use std::sync::Arc;

use fleet_api::labels::{
    BUNDLE_NAME, BUNDLE_NAMESPACE, CLUSTER, CLUSTER_NAMESPACE, CONTENT_HASH, HELM_OP_NAME,
    REPO_NAME,
};
use fleet_api::{
    BundleDeployment, BundleDeploymentStatus, BundleState, ModifiedStatus, NonReadyStatus,
    deployment_state,
};
use fleet_render::rollout;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::kept_labels::KeptLabels;
use crate::kept_options::KeptOptions;
use crate::shared;
use crate::summary::Placed;

/// The labels the Bundle work and its roll-ups read.
pub const READ_LABELS: [&str; 6] = [
    BUNDLE_NAME,
    BUNDLE_NAMESPACE,
    CLUSTER,
    CLUSTER_NAMESPACE,
    REPO_NAME,
    HELM_OP_NAME,
];

/// A BundleDeployment as the Bundle work sees it (read from the API server as such, then
/// [`trim`]med).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Deployed {
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: DeployedSpec,
    /// The agent's report, without its list of resources (boxed: a pointer in the struct,
    /// 320 bytes only when reported).
    #[serde(default)]
    pub status: Option<Box<BundleDeploymentStatus>>,
    /// The hash of what the controller wrote ([`fleet_runtime::inventory`]), from its
    /// annotation.
    #[serde(skip)]
    stamp: Option<String>,
    /// The labels in [`READ_LABELS`], which [`trim`] takes out of the metadata.
    #[serde(skip)]
    labels: KeptLabels,
}

/// What the Bundle work reads of a BundleDeployment's spec.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeployedSpec {
    /// Shared: a Bundle's BundleDeployments mostly deploy the same ids ([`crate::shared`]).
    #[serde(
        default,
        rename = "deploymentID",
        deserialize_with = "shared::optional"
    )]
    pub deployment_id: Option<Arc<str>>,
    #[serde(
        default,
        rename = "stagedDeploymentID",
        deserialize_with = "shared::optional"
    )]
    pub staged_deployment_id: Option<Arc<str>>,
    /// The options of the deployment it deploys: a target the rollout holds back keeps them.
    #[serde(default)]
    pub options: KeptOptions,
    /// Present when it deploys a HelmOp's chart (it has a copy of the repository's
    /// credentials then).
    #[serde(default)]
    helm_chart_options: Option<IgnoredAny>,
}

impl DeployedSpec {
    /// Whether it deploys a HelmOp's chart.
    pub fn from_helm_op(&self) -> bool {
        self.helm_chart_options.is_some()
    }
}

/// Makes `$projection` (a struct with `metadata`) a `kube::Resource` of the BundleDeployment
/// kind, so that a cache lists and watches BundleDeployments read as `$projection`.
macro_rules! bundle_deployment_projection {
    ($projection:ty) => {
        impl kube::Resource for $projection {
            type DynamicType = ();
            type Scope = k8s_openapi::NamespaceResourceScope;

            fn kind(dt: &()) -> std::borrow::Cow<'_, str> {
                fleet_api::BundleDeployment::kind(dt)
            }
            fn group(dt: &()) -> std::borrow::Cow<'_, str> {
                fleet_api::BundleDeployment::group(dt)
            }
            fn version(dt: &()) -> std::borrow::Cow<'_, str> {
                fleet_api::BundleDeployment::version(dt)
            }
            fn plural(dt: &()) -> std::borrow::Cow<'_, str> {
                fleet_api::BundleDeployment::plural(dt)
            }
            fn meta(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                &self.metadata
            }
            fn meta_mut(
                &mut self,
            ) -> &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                &mut self.metadata
            }
        }
    };
}
pub(crate) use bundle_deployment_projection;

bundle_deployment_projection!(Deployed);

impl Deployed {
    /// The content hash the controller stamped on it when it wrote it.
    pub fn stamp(&self) -> Option<&str> {
        self.stamp.as_deref()
    }

    /// The value of label `key`, one of [`READ_LABELS`] (the others are not kept).
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key)
    }

    /// Fleet's deployment state.
    pub fn state(&self) -> BundleState {
        deployment_state(
            self.spec.deployment_id.as_deref(),
            self.spec.staged_deployment_id.as_deref(),
            self.status.as_deref(),
        )
    }
}

impl From<&BundleDeployment> for Deployed {
    fn from(bd: &BundleDeployment) -> Self {
        let mut deployed = Self {
            metadata: bd.metadata.clone(),
            spec: DeployedSpec {
                deployment_id: bd.spec.deployment_id.as_deref().map(shared::shared),
                staged_deployment_id: bd.spec.staged_deployment_id.as_deref().map(shared::shared),
                options: KeptOptions::of(bd.spec.options.clone()),
                helm_chart_options: bd.spec.helm_chart_options.as_ref().map(|_| IgnoredAny),
            },
            status: bd.status.clone().map(Box::new),
            stamp: None,
            labels: Default::default(),
        };
        trim(&mut deployed);
        deployed
    }
}

/// Keeps what the Bundle work reads: the content hash moves out of the annotations, which
/// go; the labels in [`READ_LABELS`] move out of the metadata, the others go; no owners,
/// finalizers, uid or creation time; the status without the agent's list of resources.
pub fn trim(deployed: &mut Deployed) {
    let meta = &mut deployed.metadata;
    if let Some(mut annotations) = meta.annotations.take() {
        deployed.stamp = annotations.remove(CONTENT_HASH);
    }
    if let Some(labels) = meta.labels.take() {
        deployed.labels = KeptLabels::of(&READ_LABELS, |key| labels.get(key).map(String::as_str));
    }
    meta.finalizers = None;
    meta.owner_references = None;
    meta.uid = None;
    meta.creation_timestamp = None;
    if let Some(status) = &mut deployed.status {
        status.resources = Vec::new();
    }
}

impl rollout::Current for Deployed {
    fn deployment_id(&self) -> Option<&str> {
        self.spec.deployment_id.as_deref()
    }
    fn status(&self) -> Option<&BundleDeploymentStatus> {
        self.status.as_deref()
    }
}

impl Placed for Deployed {
    fn state(&self) -> BundleState {
        Deployed::state(self)
    }
    fn reported(&self) -> bool {
        self.status.is_some()
    }
    fn message(&self) -> Option<&str> {
        crate::summary::failing_message(&self.status.as_ref()?.conditions)
    }
    fn not_ready(&self) -> (&[NonReadyStatus], &[ModifiedStatus]) {
        self.status.as_ref().map_or((&[], &[]), |status| {
            (&status.non_ready_status, &status.modified_status)
        })
    }
    fn label(&self, key: &str) -> Option<&str> {
        Deployed::label(self, key)
    }
}

#[cfg(test)]
mod tests {
    use fleet_api::{BundleDeploymentOptions, BundleDeploymentSpec, HelmOpOptions};
    use fleet_runtime::inventory::stamp;
    use kube::{Resource, ResourceExt};

    use super::*;

    fn written() -> BundleDeployment {
        let mut bd = BundleDeployment::new(
            "app",
            BundleDeploymentSpec {
                deployment_id: Some("s-1:o".to_owned()),
                staged_deployment_id: Some("s-2:o".to_owned()),
                options: BundleDeploymentOptions {
                    default_namespace: Some("web".to_owned()),
                    ..Default::default()
                },
                staged_options: BundleDeploymentOptions {
                    default_namespace: Some("next".to_owned()),
                    ..Default::default()
                },
                helm_chart_options: Some(HelmOpOptions::default()),
                ..Default::default()
            },
        );
        bd.metadata.namespace = Some("cluster-x".to_owned());
        bd.metadata.uid = Some("u".to_owned());
        for label in [BUNDLE_NAME, CLUSTER, REPO_NAME, "fleet.cattle.io/commit"] {
            bd.labels_mut().insert(label.to_owned(), "x".to_owned());
        }
        bd.annotations_mut()
            .insert("other".to_owned(), "y".to_owned());
        stamp(&mut bd.metadata, "hash");
        bd.status = Some(BundleDeploymentStatus {
            applied_deployment_id: Some("s-1:o".to_owned()),
            ready: true,
            non_modified: true,
            resources: vec![Default::default()],
            ..Default::default()
        });
        bd
    }

    /// As the cache reads it from the API server.
    fn served(bd: &BundleDeployment) -> Deployed {
        let json = serde_json::to_value(bd).expect("json");
        let mut deployed: Deployed = serde_json::from_value(json).expect("a projection");
        trim(&mut deployed);
        deployed
    }

    #[test]
    fn a_projection_keeps_what_the_bundle_work_reads() {
        let bd = written();
        for deployed in [Deployed::from(&bd), served(&bd)] {
            assert_eq!(deployed.stamp(), Some("hash"));
            assert_eq!(deployed.metadata.annotations, None);
            let labels: Vec<&str> = deployed.labels.keys().collect();
            assert_eq!(labels, [BUNDLE_NAME, CLUSTER, REPO_NAME]);
            assert_eq!(deployed.metadata.labels, None, "moved out of the metadata");
            assert_eq!(deployed.metadata.uid, None);
            assert_eq!(deployed.spec.deployment_id.as_deref(), Some("s-1:o"));
            assert_eq!(deployed.spec.staged_deployment_id.as_deref(), Some("s-2:o"));
            assert_eq!(
                deployed.spec.options.options().expect("decodes"),
                bd.spec.options
            );
            assert!(deployed.spec.from_helm_op());
            assert!(
                deployed
                    .status
                    .as_ref()
                    .is_some_and(|s| s.resources.is_empty())
            );
            assert_eq!(Placed::state(&deployed), bd.state());
            assert!(!rollout::unavailable(&deployed));
        }
    }

    #[test]
    fn a_projection_of_a_bare_deployment_is_bare() {
        let bd = BundleDeployment::new("app", BundleDeploymentSpec::default());
        let deployed = served(&bd);
        assert_eq!(deployed.stamp(), None);
        assert!(!deployed.spec.from_helm_op());
        assert!(!deployed.reported());
        assert!(rollout::unavailable(&deployed));
        assert_eq!(Deployed::plural(&()), "bundledeployments");
    }
}
