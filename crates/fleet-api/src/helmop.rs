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
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    #[schemars(schema_with = "crate::schema::go_duration")]
    pub polling_interval: Option<String>,
    /// Secret with credentials for the Helm repository.
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
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
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub last_polling_triggered: Option<String>,
}

/// How to reach a private Helm repository, from a `helmSecretName` Secret (Fleet's keys:
/// `username`, `password`, `cacerts`) and `insecureSkipTLSVerify`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct HelmRepoAccess {
    pub username: Option<String>,
    pub password: Option<String>,
    /// PEM certificates trusted for the repository's TLS, besides the system's.
    pub ca_bundle: Option<Vec<u8>>,
    pub insecure_skip_tls_verify: bool,
}

impl std::fmt::Debug for HelmRepoAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HelmRepoAccess")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("ca_bundle", &self.ca_bundle.as_ref().map(Vec::len))
            .field("insecure_skip_tls_verify", &self.insecure_skip_tls_verify)
            .finish()
    }
}

impl HelmRepoAccess {
    /// From a Secret's `data`.
    pub fn from_secret_data(
        data: &BTreeMap<String, k8s_openapi::ByteString>,
        insecure_skip_tls_verify: bool,
    ) -> Self {
        let text = |key: &str| {
            data.get(key)
                .map(|v| String::from_utf8_lossy(&v.0).into_owned())
                .filter(|v| !v.is_empty())
        };
        Self {
            username: text("username"),
            password: text("password"),
            ca_bundle: data
                .get("cacerts")
                .map(|v| v.0.clone())
                .filter(|v| !v.is_empty()),
            insecure_skip_tls_verify,
        }
    }
}

/// The Secret in a cluster namespace holding the Helm repository credentials of one
/// BundleDeployment (copied there by the controller from the bundle's `helmOpSecretName`,
/// read by the agent).
pub fn helm_repo_secret_name(bundle_deployment: &str) -> String {
    format!("{bundle_deployment}-helm-repo")
}
