//! Status blocks shared by several kinds (Fleet's `status.go`, `bundle_types.go`,
//! `resource_types.go`), and wrangler's generic condition.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub(crate) fn is_false(value: &bool) -> bool {
    !*value
}

pub(crate) fn is_zero<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// An optional string written as Fleet's Go types write a `string` with `omitempty`: absent
/// when empty.
pub(crate) fn is_blank(value: &Option<String>) -> bool {
    value.as_deref().is_none_or(str::is_empty)
}

/// A condition as wrangler writes it (`genericcondition.GenericCondition`), which is what
/// Fleet's status fields hold. Times are RFC 3339 strings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Type of the condition, e.g. `Ready`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub last_update_time: Option<String>,
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub last_transition_time: Option<String>,
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub message: Option<String>,
}

/// The state of a BundleDeployment, as the controller summarises it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum BundleState {
    Ready,
    NotReady,
    WaitApplied,
    ErrApplied,
    OutOfSync,
    Pending,
    Modified,
}

impl BundleState {
    /// Fleet's `StateRank`: the display state is the highest-ranked non-ready state.
    pub fn rank(self) -> u8 {
        match self {
            BundleState::ErrApplied => 7,
            BundleState::WaitApplied => 6,
            BundleState::Modified => 5,
            BundleState::OutOfSync => 4,
            BundleState::Pending => 3,
            BundleState::NotReady => 2,
            BundleState::Ready => 1,
        }
    }
}

/// How many BundleDeployments are in each state, and the non-ready ones (at most 10).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BundleSummary {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub not_ready: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub wait_applied: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub err_applied: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub out_of_sync: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub modified: i64,
    #[serde(default)]
    pub ready: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub pending: i64,
    #[serde(default)]
    pub desired_ready: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub non_ready_resources: Vec<NonReadyResource>,
}

/// A BundleDeployment that is not ready, with its non-ready and modified resources.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NonReadyResource {
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle_state: Option<BundleState>,
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub modified_status: Vec<ModifiedStatus>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub non_ready_status: Vec<NonReadyStatus>,
}

// A resource's identity as Fleet's status and diff types spell it. (A plain comment:
// schemars would copy a doc comment into every schema this struct is flattened into.)
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceRef {
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub api_version: Option<String>,
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub name: Option<String>,
}

/// A deployed resource that differs from the bundle: missing, extra (`delete`) or patched.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModifiedStatus {
    #[serde(flatten)]
    pub resource: ResourceRef,
    /// The resource should exist but does not (Fleet's JSON name for its `Create` field).
    #[serde(default, skip_serializing_if = "is_false")]
    pub missing: bool,
    /// The resource exists but should not.
    #[serde(default, skip_serializing_if = "is_false")]
    pub delete: bool,
    /// The JSON merge patch from the desired to the live object.
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub patch: Option<String>,
}

/// A deployed resource that is not ready, with wrangler's summary of why.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NonReadyStatus {
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub uid: Option<String>,
    #[serde(flatten)]
    pub resource: ResourceRef,
    #[serde(default)]
    pub summary: ResourceSummary,
}

/// wrangler's `summary.Summary` of one object's state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceSummary {
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub error: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub transitioning: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub message: Vec<String>,
}

/// Resources in each state, over all bundles.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceCounts {
    #[serde(default)]
    pub ready: i64,
    #[serde(default)]
    pub desired_ready: i64,
    #[serde(default)]
    pub wait_applied: i64,
    #[serde(default)]
    pub modified: i64,
    #[serde(default)]
    pub orphaned: i64,
    #[serde(default)]
    pub missing: i64,
    #[serde(default)]
    pub unknown: i64,
    #[serde(default)]
    pub not_ready: i64,
}

/// A human-readable status summary (GitRepo, HelmOp).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusDisplay {
    /// `"<ready>/<total>"` BundleDeployments.
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub ready_bundle_deployments: Option<String>,
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub error: bool,
}

/// A resource of a GitRepo's or HelmOp's bundles, with its state per cluster.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Resource {
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub api_version: Option<String>,
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub kind: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "crate::common::is_blank",
        rename = "type"
    )]
    pub type_: Option<String>,
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub incomplete_state: bool,
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub error: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub transitioning: bool,
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub message: Option<String>,
    /// Cluster ids per state (`ready`, `waitApplied`, `pending`, `modified`, `orphaned`,
    /// `missing`, `unknown`, `notReady`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub per_cluster_state: BTreeMap<String, Vec<String>>,
}

/// The status shared by GitRepo and HelmOp (Fleet's `StatusBase`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusBase {
    /// The lowest number of ready clusters over all bundles.
    #[serde(default)]
    pub ready_clusters: i64,
    #[serde(default)]
    pub desired_ready_clusters: i64,
    #[serde(default)]
    pub summary: BundleSummary,
    #[serde(default)]
    pub display: StatusDisplay,
    /// A list map keyed by `type`: the controller applies `Ready` of a GitRepo, gitjob and
    /// helmops their own conditions, each with server-side apply, none removing the others'.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<Resource>,
    #[serde(default)]
    pub resource_counts: ResourceCounts,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub per_cluster_resource_counts: BTreeMap<String, ResourceCounts>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resource_errors: Vec<String>,
}
