//! Cluster registration: a ClusterRegistrationToken lets an agent register; the agent's
//! ClusterRegistration becomes a Cluster with its own namespace and credentials.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::is_false;

#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "fleet.cattle.io",
    version = "v1alpha1",
    kind = "ClusterRegistrationToken",
    doc = "A token that lets agents register their clusters into this namespace.",
    namespaced,
    status = "ClusterRegistrationTokenStatus",
    printcolumn = r#"{"name":"Secret-Name","type":"string","jsonPath":".status.secretName"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterRegistrationTokenSpec {
    /// How long the token is valid (Go duration, e.g. `240h`); none means no expiry.
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    #[schemars(schema_with = "crate::schema::go_duration")]
    pub ttl: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterRegistrationTokenStatus {
    /// RFC 3339 expiry time.
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub expires: Option<String>,
    /// The Secret holding the values an agent needs to register.
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub secret_name: Option<String>,
}

#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "fleet.cattle.io",
    version = "v1alpha1",
    kind = "ClusterRegistration",
    doc = "An agent's request to register its cluster; granted by fleet-controller.",
    namespaced,
    status = "ClusterRegistrationStatus",
    printcolumn = r#"{"name":"Cluster-Name","type":"string","jsonPath":".status.clusterName"}"#,
    printcolumn = r#"{"name":"Labels","type":"string","jsonPath":".spec.clusterLabels"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterRegistrationSpec {
    /// The agent's stable identity (configured, or its kube-system namespace UID).
    #[serde(
        default,
        skip_serializing_if = "crate::common::is_blank",
        rename = "clientID"
    )]
    pub client_id: Option<String>,
    /// A random value per registration attempt.
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub client_random: Option<String>,
    /// Labels for the Cluster.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cluster_labels: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterRegistrationStatus {
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub cluster_name: Option<String>,
    /// Credentials have been issued.
    #[serde(default, skip_serializing_if = "is_false")]
    pub granted: bool,
}
