//! BundleDeployment: one Bundle for one cluster, in that cluster's namespace upstream; what the
//! agent deploys and reports on.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::bundle::{BundleRef, HelmOpOptions};
use crate::common::{
    BundleState, Condition, ModifiedStatus, NonReadyStatus, ResourceCounts, ResourceRef, is_false,
    is_zero,
};
use crate::options::{BundleDeploymentOptions, CorrectDrift};

#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "fleet.cattle.io",
    version = "v1alpha1",
    kind = "BundleDeployment",
    doc = "One Bundle for one cluster, in that cluster's namespace: written by fleet-controller, deployed by the cluster's agent.",
    namespaced,
    status = "BundleDeploymentStatus",
    printcolumn = r#"{"name":"Deployed","type":"string","jsonPath":".status.display.deployed"}"#,
    printcolumn = r#"{"name":"Monitored","type":"string","jsonPath":".status.display.monitored"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].message"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct BundleDeploymentSpec {
    #[serde(default, skip_serializing_if = "is_false")]
    pub paused: bool,
    /// Options staged for the next deployment (rollout).
    #[serde(default)]
    pub staged_options: BundleDeploymentOptions,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "stagedDeploymentID"
    )]
    pub staged_deployment_id: Option<String>,
    /// The options to deploy now.
    #[serde(default)]
    pub options: BundleDeploymentOptions,
    /// `<manifest id>:<options hash>`: what to deploy now.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "deploymentID"
    )]
    pub deployment_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<BundleRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correct_drift: Option<CorrectDrift>,
    /// Contents are in an OCI registry.
    #[serde(default, skip_serializing_if = "is_false")]
    pub oci_contents: bool,
    /// The chart comes from a Helm repository (helmops).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helm_chart_options: Option<HelmOpOptions>,
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub values_hash: Option<String>,
    /// Outside the cluster's schedule: do not update.
    #[serde(default, skip_serializing_if = "is_false")]
    pub off_schedule: bool,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub downstream_resources_generation: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BundleDeploymentStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The deployment id the agent has applied.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "appliedDeploymentID"
    )]
    pub applied_deployment_id: Option<String>,
    /// `<namespace>/<release name>:<revision>`.
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub release: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub ready: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub non_modified: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub non_ready_status: Vec<NonReadyStatus>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub modified_status: Vec<ModifiedStatus>,
    /// The lists above were cut at 10 entries.
    #[serde(default, skip_serializing_if = "is_false")]
    pub incomplete_state: bool,
    #[serde(default)]
    pub display: BundleDeploymentDisplay,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<BundleDeploymentResource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_counts: Option<ResourceCounts>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub downstream_resources_generation: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BundleDeploymentDisplay {
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub deployed: Option<String>,
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub monitored: Option<String>,
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub state: Option<String>,
}

/// A resource the release deployed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BundleDeploymentResource {
    #[serde(flatten)]
    pub resource: ResourceRef,
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub created_at: Option<String>,
}

impl BundleDeployment {
    /// Fleet's `GetDeploymentState` ([`deployment_state`]).
    pub fn state(&self) -> BundleState {
        deployment_state(
            self.spec.deployment_id.as_deref(),
            self.spec.staged_deployment_id.as_deref(),
            self.status.as_ref(),
        )
    }
}

/// Fleet's `GetDeploymentState` of a BundleDeployment deploying `deployment_id` with
/// `staged_id` staged, reported as `status`, checked in this order: not applied yet
/// (`ErrApplied` when the agent's `Deployed` condition is False, else `WaitApplied`), not
/// ready, staged but not promoted (`OutOfSync`), modified, else `Ready`.
pub fn deployment_state(
    deployment_id: Option<&str>,
    staged_id: Option<&str>,
    status: Option<&BundleDeploymentStatus>,
) -> BundleState {
    let unreported = BundleDeploymentStatus::default();
    let status = status.unwrap_or(&unreported);
    if status.applied_deployment_id.as_deref() != deployment_id {
        let deploy_failed = status
            .conditions
            .iter()
            .any(|c| c.type_ == "Deployed" && c.status == "False");
        return if deploy_failed {
            BundleState::ErrApplied
        } else {
            BundleState::WaitApplied
        };
    }
    if !status.ready {
        return BundleState::NotReady;
    }
    if deployment_id != staged_id {
        return BundleState::OutOfSync;
    }
    if !status.non_modified {
        return BundleState::Modified;
    }
    BundleState::Ready
}
