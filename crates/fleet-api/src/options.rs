//! `BundleDeploymentOptions`: how a bundle is deployed. Shared by Bundle specs, targets and
//! target customizations, `fleet.yaml`, and BundleDeployments.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{ResourceRef, is_false, is_zero};

/// Helm values: any YAML object, kept as given.
pub type Values = serde_json::Map<String, serde_json::Value>;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BundleDeploymentOptions {
    /// Namespace for resources that do not set one (not enforced).
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub default_namespace: Option<String>,
    /// Forces every resource into this namespace; cluster-scoped resources then fail.
    #[serde(
        default,
        skip_serializing_if = "crate::common::is_blank",
        rename = "namespace"
    )]
    pub target_namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kustomize: Option<KustomizeOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helm: Option<HelmOptions>,
    /// ServiceAccount the agent deploys as.
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub service_account: Option<String>,
    /// Increment to force a redeployment.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub force_sync_generation: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub yaml: Option<YamlOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff: Option<DiffOptions>,
    /// Keep the deployed resources when the bundle is removed.
    #[serde(default, skip_serializing_if = "is_false")]
    pub keep_resources: bool,
    /// Delete the namespace when the bundle is removed.
    #[serde(default, skip_serializing_if = "is_false")]
    pub delete_namespace: bool,
    /// Also delete CRDs (and so every custom resource of them) on removal.
    #[serde(
        default,
        skip_serializing_if = "is_false",
        rename = "deleteCRDResources"
    )]
    pub delete_crd_resources: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore: Option<IgnoreOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correct_drift: Option<CorrectDrift>,
    /// Whether the target namespace is created (default: yes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_namespace: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_annotations: Option<BTreeMap<String, String>>,
    /// Secrets and ConfigMaps copied to the downstream cluster.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub downstream_resources: Vec<DownstreamResource>,
    /// Set by the controller from GitRepoRestrictions; checked by the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::label_selector")]
    pub allowed_target_namespace_selector: Option<LabelSelector>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KustomizeOptions {
    /// Directory holding the `kustomization.yaml`, relative to the bundle.
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub dir: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct YamlOptions {
    /// Names of `overlays/<name>` directories whose files replace or (`_patch`) patch the
    /// bundle's files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overlays: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DiffOptions {
    /// Fields to leave out when checking deployed resources for modifications.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub compare_patches: Vec<ComparePatch>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComparePatch {
    #[serde(flatten)]
    pub resource: ResourceRef,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operations: Vec<Operation>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub json_pointers: Vec<String>,
}

/// A JSON patch operation of a compare patch, usually `remove`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub op: Option<String>,
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub value: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IgnoreOptions {
    /// Conditions (as key/value matches) to ignore when judging readiness.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<BTreeMap<String, String>>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CorrectDrift {
    /// Put modified resources back as the bundle says.
    #[serde(default, skip_serializing_if = "is_false")]
    pub enabled: bool,
    /// Correct with `--force` (recreates resources).
    #[serde(default, skip_serializing_if = "is_false")]
    pub force: bool,
    /// Keep failed corrections in the Helm history.
    #[serde(default, skip_serializing_if = "is_false")]
    pub keep_fail_history: bool,
}

/// A Secret or ConfigMap copied to the downstream cluster.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DownstreamResource {
    /// `Secret` or `ConfigMap`.
    pub kind: String,
    pub name: String,
}

/// Helm options. For non-Helm bundles only some apply (e.g. `releaseName`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HelmOptions {
    /// A chart: a path in the bundle, a URL, an `oci://` reference or a name in `repo`.
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub chart: Option<String>,
    /// The Helm repository URL the chart is fetched from.
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub repo: Option<String>,
    /// The release name (default: from the GitRepo name and path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 53),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub release_name: Option<String>,
    /// The chart version (a semver constraint for charts from a repository).
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub version: Option<String>,
    /// How long Helm may take.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub timeout_seconds: i64,
    /// Values; keys and values may be templates (`${ .ClusterLabels.env }`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::preserve_unknown_object")]
    pub values: Option<Values>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values_from: Vec<ValuesFrom>,
    /// Replace immutable resources (dangerous).
    #[serde(default, skip_serializing_if = "is_false")]
    pub force: bool,
    /// Adopt existing resources not created by Helm.
    #[serde(default, skip_serializing_if = "is_false")]
    pub take_ownership: bool,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_history: i64,
    /// Values files in the bundle, merged in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values_files: Vec<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub wait_for_jobs: bool,
    /// Roll back a failed upgrade.
    #[serde(default, skip_serializing_if = "is_false")]
    pub atomic: bool,
    /// Do not process templates in values.
    #[serde(default, skip_serializing_if = "is_false")]
    pub disable_pre_process: bool,
    /// Values rendered per cluster from Go templates (`${ }` delimiters, sprig functions),
    /// each parsed as YAML and set over `values` under its key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub template_values: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "is_false", rename = "disableDNS")]
    pub disable_dns: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub skip_schema_validation: bool,
    /// Do not run `helm dependency update` for charts that declare dependencies.
    #[serde(default, skip_serializing_if = "is_false")]
    pub disable_dependency_update: bool,
}

/// Values from a ConfigMap or Secret key in the downstream cluster.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ValuesFrom {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_key_ref: Option<KeyRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<KeyRef>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyRef {
    pub name: String,
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub key: Option<String>,
}
