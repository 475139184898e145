//! Kinds whose fields sit at the top level, next to `metadata` (Fleet defines them without a
//! `spec`): Content, BundleNamespaceMapping and GitRepoRestriction.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::schema::{TopLevelKind, top_level_crd, top_level_resource};

/// The manifest of a bundle, stored once for all its BundleDeployments; cluster-scoped, named
/// `s-<sha256>`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Content {
    #[schemars(skip)]
    #[serde(flatten, default)]
    pub types: kube::core::TypeMeta,
    #[schemars(skip)]
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// gzip-compressed JSON of the manifest (base64 in YAML and JSON).
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    #[schemars(schema_with = "crate::schema::bytes")]
    pub content: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "crate::common::is_blank",
        rename = "sha256sum"
    )]
    pub sha256sum: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ContentStatus>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContentStatus {
    /// How many BundleDeployments use this content.
    #[serde(default)]
    pub reference_count: i64,
}

/// Lets bundles of this namespace target clusters in the namespaces its selectors match.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BundleNamespaceMapping {
    #[schemars(skip)]
    #[serde(flatten, default)]
    pub types: kube::core::TypeMeta,
    #[schemars(skip)]
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::label_selector")]
    pub bundle_selector: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::label_selector")]
    pub namespace_selector: Option<LabelSelector>,
}

/// Limits what GitRepos in this namespace may use.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitRepoRestriction {
    #[schemars(skip)]
    #[serde(flatten, default)]
    pub types: kube::core::TypeMeta,
    #[schemars(skip)]
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub default_service_account: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_service_accounts: Vec<String>,
    /// Regular expressions the GitRepo's `repo` must match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_repo_patterns: Vec<String>,
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub default_client_secret_name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_client_secret_names: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_target_namespaces: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::label_selector")]
    pub allowed_target_namespace_selector: Option<LabelSelector>,
}

top_level_resource!(
    Content,
    "Content",
    "contents",
    kube::core::ClusterResourceScope
);
top_level_resource!(
    BundleNamespaceMapping,
    "BundleNamespaceMapping",
    "bundlenamespacemappings",
    kube::core::NamespaceResourceScope
);
top_level_resource!(
    GitRepoRestriction,
    "GitRepoRestriction",
    "gitreporestrictions",
    kube::core::NamespaceResourceScope
);

pub(crate) fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        top_level_crd::<Content>(&TopLevelKind {
            kind: "Content",
            plural: "contents",
            namespaced: false,
            printer_columns: &[],
        }),
        top_level_crd::<BundleNamespaceMapping>(&TopLevelKind {
            kind: "BundleNamespaceMapping",
            plural: "bundlenamespacemappings",
            namespaced: true,
            printer_columns: &[],
        }),
        top_level_crd::<GitRepoRestriction>(&TopLevelKind {
            kind: "GitRepoRestriction",
            plural: "gitreporestrictions",
            namespaced: true,
            printer_columns: &[
                ("Default-ServiceAccount", ".defaultServiceAccount"),
                ("Allowed-ServiceAccounts", ".allowedServiceAccounts"),
            ],
        }),
    ]
}
