//! Cluster (a downstream cluster, registered by its agent) and ClusterGroup (clusters picked
//! by a label selector).

use k8s_openapi::api::core::v1::{
    Affinity, EnvVar, LocalObjectReference, ResourceRequirements, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{BundleSummary, Condition, ResourceCounts, is_false, is_zero};
use crate::options::Values;

#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "fleet.cattle.io",
    version = "v1alpha1",
    kind = "Cluster",
    doc = "A downstream cluster managed by Fleet, registered by its agent.",
    namespaced,
    status = "ClusterStatus",
    printcolumn = r#"{"name":"Bundles-Ready","type":"string","jsonPath":".status.display.readyBundles"}"#,
    printcolumn = r#"{"name":"Last-Seen","type":"string","jsonPath":".status.agent.lastSeen"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].message"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSpec {
    /// Stop updating this cluster's BundleDeployments.
    #[serde(default, skip_serializing_if = "is_false")]
    pub paused: bool,
    /// The agent's identity for registration (e.g. the kube-system namespace UID).
    #[serde(
        default,
        skip_serializing_if = "crate::common::is_blank",
        rename = "clientID"
    )]
    pub client_id: Option<String>,
    /// Manager-initiated import: Secret with the cluster's kubeconfig.
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub kube_config_secret: Option<String>,
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub kube_config_secret_namespace: Option<String>,
    /// Increment to redeploy the agent.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub redeploy_agent_generation: i64,
    /// Values for `${ .ClusterValues.x }` templating in bundles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::preserve_unknown_object")]
    pub template_values: Option<Values>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agent_env_vars: Vec<EnvVar>,
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub agent_namespace: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "privateRepoURL"
    )]
    pub private_repo_url: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agent_tolerations: Vec<Toleration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_affinity: Option<Affinity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_resources: Option<ResourceRequirements>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_network: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agent_pull_secrets: Vec<LocalObjectReference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_scheduling_customization: Option<AgentSchedulingCustomization>,
    /// fleet-rs: replicas of a managed agent (default: the controller's `--agent-replicas`,
    /// the chart's `agent.replicas`). Fleet sets one count for every agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_replicas: Option<i32>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentSchedulingCustomization {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class: Option<PriorityClassSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_disruption_budget: Option<PodDisruptionBudgetSpec>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PriorityClassSpec {
    pub value: i32,
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub preemption_policy: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodDisruptionBudgetSpec {
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub min_available: Option<String>,
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub max_unavailable: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    /// A list keyed by `type` (server-side apply merges it by type): the status roll-up owns
    /// `Ready`, the agent import `Imported`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The cluster namespace upstream, holding its BundleDeployments.
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub namespace: Option<String>,
    #[serde(default)]
    pub summary: BundleSummary,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_counts: Option<ResourceCounts>,
    #[serde(default)]
    pub ready_git_repos: i64,
    #[serde(default)]
    pub desired_ready_git_repos: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ready_helm_ops: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub desired_ready_helm_ops: i64,
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub agent_env_vars_hash: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "agentPrivateRepoURL"
    )]
    pub agent_private_repo_url: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub agent_host_network: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_deployed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub agent_migrated: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub agent_namespace_migrated: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub cattle_namespace_migrated: bool,
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub agent_affinity_hash: Option<String>,
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub agent_resources_hash: Option<String>,
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub agent_tolerations_hash: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub agent_config_changed: bool,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "apiServerURL"
    )]
    pub api_server_url: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "apiServerCAHash"
    )]
    pub api_server_ca_hash: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "agentTLSMode"
    )]
    pub agent_tls_mode: Option<String>,
    #[serde(default)]
    pub display: ClusterDisplay,
    #[serde(default)]
    pub agent: AgentStatus,
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub garbage_collection_interval: Option<String>,
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub agent_scheduling_customization_hash: Option<String>,
    /// fleet-rs: a hash of everything a managed agent's objects are made from (image,
    /// replicas and the agent fields above); a change re-applies them.
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub agent_manifest_hash: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub scheduled: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub active_schedule: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterDisplay {
    /// `"<ready>/<desired>"` bundles.
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub ready_bundles: Option<String>,
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub state: Option<String>,
}

/// What the agent reports about itself (its heartbeat).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentStatus {
    /// RFC 3339 time of the agent's last check-in.
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub last_seen: Option<String>,
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub namespace: Option<String>,
}

#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "fleet.cattle.io",
    version = "v1alpha1",
    kind = "ClusterGroup",
    doc = "A set of clusters in this namespace, selected by labels.",
    namespaced,
    status = "ClusterGroupStatus",
    category = "fleet",
    printcolumn = r#"{"name":"Clusters-Ready","type":"string","jsonPath":".status.display.readyClusters"}"#,
    printcolumn = r#"{"name":"Bundles-Ready","type":"string","jsonPath":".status.display.readyBundles"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].message"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterGroupSpec {
    /// Clusters (in the same namespace) whose labels match belong to the group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::label_selector")]
    pub selector: Option<LabelSelector>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterGroupStatus {
    #[serde(default)]
    pub cluster_count: i64,
    #[serde(default)]
    pub non_ready_cluster_count: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub non_ready_clusters: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default)]
    pub summary: BundleSummary,
    #[serde(default)]
    pub display: ClusterGroupDisplay,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_counts: Option<ResourceCounts>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterGroupDisplay {
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub ready_clusters: Option<String>,
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub ready_bundles: Option<String>,
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub state: Option<String>,
}
