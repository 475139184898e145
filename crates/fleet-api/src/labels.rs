//! Label, annotation and finalizer names, with Fleet's values: the other components (and
//! users' selectors) rely on them.

/// Prefix of the labels Fleet manages; an agent must not be able to assert them.
pub const FLEET_LABEL_PREFIX: &str = "fleet.cattle.io/";

/// On Bundles: the GitRepo they come from.
pub const REPO_NAME: &str = "fleet.cattle.io/repo-name";
/// On Bundles: the commit they were built from (`fleet apply` reads `$COMMIT`).
pub const COMMIT: &str = "fleet.cattle.io/commit";
/// On BundleDeployments: the Bundle's name and namespace.
pub const BUNDLE_NAME: &str = "fleet.cattle.io/bundle-name";
pub const BUNDLE_NAMESPACE: &str = "fleet.cattle.io/bundle-namespace";
/// On BundleDeployments: the Cluster they deploy to, and its namespace.
pub const CLUSTER: &str = "fleet.cattle.io/cluster";
pub const CLUSTER_NAMESPACE: &str = "fleet.cattle.io/cluster-namespace";
/// On BundleDeployments: the Content object holding their manifest.
pub const CONTENT_NAME: &str = "fleet.cattle.io/content-name";
/// On Bundles created by helmops: the HelmOp they come from.
pub const HELM_OP_NAME: &str = "fleet.cattle.io/fleet-helm-name";
/// On objects (namespaces, service accounts, RBAC) the controller manages, value `true`.
pub const MANAGED: &str = "fleet.cattle.io/managed";
/// Opt-in to a controller shard (usually on a GitRepo; propagated to Bundles and
/// BundleDeployments).
pub const SHARD_REF: &str = "fleet.cattle.io/shard-ref";
/// On controller pods: their shard.
pub const SHARD_ID: &str = "fleet.cattle.io/shard-id";
pub const SHARD_DEFAULT: &str = "fleet.cattle.io/shard-default";
/// The one `fleet.cattle.io/` label an agent may set on its own registration.
pub const CREATED_BY_AGENT_POD: &str = "fleet.cattle.io/created-by-agent-pod";

/// Finalizers, as Fleet names them.
pub const GITREPO_FINALIZER: &str = "fleet.cattle.io/gitrepo-finalizer";
pub const BUNDLE_FINALIZER: &str = "fleet.cattle.io/bundle-finalizer";
pub const BUNDLE_DEPLOYMENT_FINALIZER: &str = "fleet.cattle.io/bundle-deployment-finalizer";
pub const CLUSTER_FINALIZER: &str = "fleet.cattle.io/cluster-finalizer";
/// fleet-rs's name for the HelmOp finalizer, in Fleet's pattern.
pub const HELMOP_FINALIZER: &str = "fleet.cattle.io/helmop-finalizer";

/// Condition types.
pub mod conditions {
    pub const READY: &str = "Ready";
    pub const ACCEPTED: &str = "Accepted";
    pub const STALLED: &str = "Stalled";
    pub const RECONCILING: &str = "Reconciling";
    pub const GIT_POLLING: &str = "GitPolling";
    pub const POLLED: &str = "Polled";
    pub const INSTALLED: &str = "Installed";
    pub const DEPLOYED: &str = "Deployed";
    pub const MONITORED: &str = "Monitored";
    pub const PROCESSED: &str = "Processed";
}

/// On Bundles written by gitjob and `fleet apply`: a hash of what was written, so that an
/// unchanged repository costs no API write (fleet-rs; Fleet has no equivalent).
pub const CONTENT_HASH: &str = "fleet-rs.io/content-hash";
