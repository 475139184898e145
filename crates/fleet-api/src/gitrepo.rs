//! GitRepo: a git repository whose paths become Bundles (gitjob).

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::bundle::ClusterSelection;
use crate::common::{StatusBase, is_false, is_zero};
use crate::options::CorrectDrift;

#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "fleet.cattle.io",
    version = "v1alpha1",
    kind = "GitRepo",
    doc = "A git repository watched by Fleet; its paths become Bundles deployed to the targeted clusters.",
    namespaced,
    status = "GitRepoStatus",
    category = "fleet",
    printcolumn = r#"{"name":"Repo","type":"string","jsonPath":".spec.repo"}"#,
    printcolumn = r#"{"name":"Commit","type":"string","jsonPath":".status.commit"}"#,
    printcolumn = r#"{"name":"BundleDeployments-Ready","type":"string","jsonPath":".status.display.readyBundleDeployments"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].message"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct GitRepoSpec {
    /// The repository URL (`https://`, `http://`, `ssh://`, `git@host:path`, `file://`).
    #[schemars(length(min = 1))]
    pub repo: String,
    /// The branch to follow (default `master`); wins over `revision`.
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub branch: Option<String>,
    /// A commit, tag or branch.
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub revision: Option<String>,
    /// Directories with bundles, globs allowed (default: the repository root).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// Bundles listed explicitly ("driven scan"), instead of discovered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bundles: Vec<BundlePath>,
    /// Deploy every resource into this namespace.
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub target_namespace: Option<String>,
    /// Secret with git credentials (`kubernetes.io/basic-auth` or `kubernetes.io/ssh-auth`);
    /// default `gitcredential`.
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub client_secret_name: Option<String>,
    /// Secret with credentials for Helm repositories.
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub helm_secret_name: Option<String>,
    /// Secret with Helm credentials per path.
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub helm_secret_name_for_paths: Option<String>,
    /// Use the Helm credentials only for repositories matching this regular expression.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "helmRepoURLRegex"
    )]
    pub helm_repo_url_regex: Option<String>,
    /// PEM CA bundle for the repository's certificate.
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    #[schemars(schema_with = "crate::schema::bytes")]
    pub ca_bundle: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "is_false",
        rename = "insecureSkipTLSVerify"
    )]
    pub insecure_skip_tls_verify: bool,
    /// Stop propagating changes; BundleDeployments show OutOfSync.
    #[serde(default, skip_serializing_if = "is_false")]
    pub paused: bool,
    /// ServiceAccount used downstream to deploy.
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub service_account: Option<String>,
    /// Clusters to deploy to (default: the `default` cluster group).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<GitTarget>,
    /// How often to check for new commits (Go duration; Fleet's default is 15 s).
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    #[schemars(schema_with = "crate::schema::go_duration")]
    pub polling_interval: Option<String>,
    /// Only webhooks trigger syncs.
    #[serde(default, skip_serializing_if = "is_false")]
    pub disable_polling: bool,
    /// Increment to force a redeployment.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub force_sync_generation: i64,
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    #[schemars(schema_with = "crate::schema::go_duration")]
    pub image_scan_interval: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_scan_commit: Option<CommitSpec>,
    /// Keep deployed resources when the GitRepo is deleted.
    #[serde(default, skip_serializing_if = "is_false")]
    pub keep_resources: bool,
    /// Delete the target namespace when the GitRepo is deleted.
    #[serde(default, skip_serializing_if = "is_false")]
    pub delete_namespace: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correct_drift: Option<CorrectDrift>,
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub oci_registry_secret: Option<String>,
    /// Secret with the webhook secret for this repository.
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub webhook_secret: Option<String>,
}

/// An explicitly listed bundle: a base directory and an options file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BundlePath {
    pub base: String,
    /// A `fleet.yaml`-style options file, relative to the repository root.
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub options: Option<String>,
}

/// A cluster or cluster group to deploy to.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitTarget {
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub name: Option<String>,
    #[serde(flatten)]
    pub clusters: ClusterSelection,
}

/// How image-scan write-backs are committed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommitSpec {
    pub author_name: String,
    pub author_email: String,
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub message_template: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitRepoStatus {
    #[serde(flatten)]
    pub base: StatusBase,
    #[serde(default)]
    pub observed_generation: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub update_generation: i64,
    /// The commit whose Bundles are written.
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub commit: Option<String>,
    /// The newest commit a webhook reported.
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub webhook_commit: Option<String>,
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub last_webhook_time: Option<String>,
    /// The newest commit polling found.
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub polling_commit: Option<String>,
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub last_polling_triggered: Option<String>,
    /// Fleet reports its git Job's state here (`Current`, `InProgress`, `Failed`); fleet-rs
    /// syncs in process and reports the sync's state the same way.
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub git_job_status: Option<String>,
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub last_synced_image_scan_time: Option<String>,
}
