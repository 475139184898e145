//! HelmOp: a Helm chart from a repository, deployed to clusters without git (helmops).

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::bundle::BundleSpec;
use crate::common::{StatusBase, is_false};

#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "fleet.cattle.io",
    version = "v1alpha1",
    kind = "HelmOp",
    doc = "A Helm chart from a repository, deployed to the targeted clusters as a Bundle.",
    namespaced,
    status = "HelmOpStatus",
    category = "fleet",
    printcolumn = r#"{"name":"Repo","type":"string","jsonPath":".spec.helm.repo"}"#,
    printcolumn = r#"{"name":"Chart","type":"string","jsonPath":".spec.helm.chart"}"#,
    printcolumn = r#"{"name":"Version","type":"string","jsonPath":".status.version"}"#,
    printcolumn = r#"{"name":"BundleDeployments-Ready","type":"string","jsonPath":".status.display.readyBundleDeployments"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].message"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct HelmOpSpec {
    /// The Bundle to create: `helm.chart`, `helm.repo`, `helm.version`, targets, ...
    #[serde(flatten)]
    pub bundle: BundleSpec,
    /// Labels for the Bundle.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// How often to look for a new chart version (Go duration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::go_duration")]
    pub polling_interval: Option<String>,
    /// Secret with credentials for the Helm repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helm_secret_name: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "is_false",
        rename = "insecureSkipTLSVerify"
    )]
    pub insecure_skip_tls_verify: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HelmOpStatus {
    #[serde(flatten)]
    pub base: StatusBase,
    /// The chart version resolved from the constraint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_polling_triggered: Option<String>,
}
