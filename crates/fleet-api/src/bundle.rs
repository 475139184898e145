//! Bundle: the resources of an application and how to deploy them, the unit the controller
//! targets to clusters.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{BundleSummary, Condition, is_false, is_zero};
use crate::options::BundleDeploymentOptions;

#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "fleet.cattle.io",
    version = "v1alpha1",
    kind = "Bundle",
    doc = "A bundle of resources (manifests, a Helm chart, kustomize) and the options to deploy them to clusters.",
    namespaced,
    status = "BundleStatus",
    printcolumn = r#"{"name":"BundleDeployments-Ready","type":"string","jsonPath":".status.display.readyClusters"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].message"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct BundleSpec {
    #[serde(flatten)]
    pub options: BundleDeploymentOptions,
    /// Stop updating BundleDeployments; changes show as OutOfSync.
    #[serde(default, skip_serializing_if = "is_false")]
    pub paused: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_strategy: Option<RolloutStrategy>,
    /// The bundle's files (manifests, chart files, values files).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<BundleResource>,
    /// Which clusters get the bundle, with per-target options.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<BundleTarget>,
    /// Whether only the first matching target customizes a cluster, or all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_customization_mode: Option<TargetCustomizationMode>,
    /// An allow-list of targets (set by `fleet apply`, not by users).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_restrictions: Vec<BundleTargetRestriction>,
    /// Bundles that must be ready first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<BundleRef>,
    /// Contents stored in an OCI registry.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "contentsId"
    )]
    pub contents_id: Option<String>,
    /// Set by helmops: the chart comes from a Helm repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helm_op_options: Option<HelmOpOptions>,
    /// Hash of the values, so that a values change changes the deployment.
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub values_hash: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum TargetCustomizationMode {
    /// The first matching target customizes the cluster (Fleet's default).
    #[default]
    FirstMatch,
    /// Every matching target applies, in order.
    AllMatches,
}

/// A bundle that must be ready first: by name or by label selector.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BundleRef {
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::label_selector")]
    pub selector: Option<LabelSelector>,
    /// States of the dependency that count as ready (default: `Ready`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accepted_states: Vec<String>,
}

/// One file of a bundle.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BundleResource {
    /// The path inside the bundle.
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub content: Option<String>,
    /// Empty (plain text) or `base64+gz`.
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    #[schemars(regex(pattern = r"^(base64\+gz)?$"))]
    pub encoding: Option<String>,
}

// Which clusters a target, target restriction or rollout partition matches, as Fleet spells
// it in each of them: by name, by labels, by cluster group name or by group labels. When a
// group is given, `clusterSelector` further narrows the group's clusters. (A plain comment:
// schemars would copy a doc comment into every schema this struct is flattened into.)
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSelection {
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub cluster_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::label_selector")]
    pub cluster_selector: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub cluster_group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::label_selector")]
    pub cluster_group_selector: Option<LabelSelector>,
}

/// Clusters to deploy to, and options merged into the bundle's for them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BundleTarget {
    #[serde(flatten)]
    pub options: BundleDeploymentOptions,
    /// Display name (default `target000`, `target001`, ...).
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub name: Option<String>,
    #[serde(flatten)]
    pub clusters: ClusterSelection,
    /// Match these clusters but deploy nothing to them.
    #[serde(default, skip_serializing_if = "is_false")]
    pub do_not_deploy: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BundleTargetRestriction {
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub name: Option<String>,
    #[serde(flatten)]
    pub clusters: ClusterSelection,
}

/// How a bundle change rolls out across clusters.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStrategy {
    /// Clusters that may be unavailable during an update (default `100%`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<IntOrString>,
    /// Partitions that may be unavailable (default `0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable_partitions: Option<IntOrString>,
    /// Size of automatic partitions (default `25%`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_partition_size: Option<IntOrString>,
    /// Clusters needed before automatic partitioning (default 200).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_partition_threshold: Option<IntOrString>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<Partition>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Partition {
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub name: Option<String>,
    /// Clusters of this partition that may be unavailable (default `10%`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<IntOrString>,
    #[serde(flatten)]
    pub clusters: ClusterSelection,
}

/// Where helmops' bundles get their chart: credentials and TLS for the Helm repository.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HelmOpOptions {
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub helm_op_secret_name: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "is_false",
        rename = "helmOpInsecureSkipTLSVerify"
    )]
    pub helm_op_insecure_skip_tls_verify: bool,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "helmOpCABundle"
    )]
    #[schemars(schema_with = "crate::schema::bytes")]
    pub helm_op_ca_bundle: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BundleStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default)]
    pub summary: BundleSummary,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub newly_created: i64,
    #[serde(default)]
    pub unavailable: i64,
    #[serde(default)]
    pub unavailable_partitions: i64,
    #[serde(default)]
    pub max_unavailable: i64,
    #[serde(default)]
    pub max_unavailable_partitions: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_new: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty", rename = "partitions")]
    pub partition_status: Vec<PartitionStatus>,
    #[serde(default)]
    pub display: BundleDisplay,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "ociReference"
    )]
    pub oci_reference: Option<String>,
    #[serde(default)]
    pub observed_generation: i64,
    /// SHA-256 of the JSON of `spec.resources`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "resourcesSha256Sum"
    )]
    pub resources_sha256_sum: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BundleDisplay {
    /// `"<ready>/<desired>"` clusters.
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub ready_clusters: Option<String>,
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub state: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartitionStatus {
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub count: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_unavailable: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unavailable: i64,
    #[serde(default)]
    pub summary: BundleSummary,
}
