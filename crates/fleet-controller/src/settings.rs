//! The controller's flags that reconcilers read.

use std::time::Duration;

/// What the reconcilers read of the controller's flags.
#[derive(Debug, Clone)]
pub struct Settings {
    /// A Cluster whose agent has not checked in for this long is not Ready.
    pub agent_timeout: Duration,
    /// The API server URL agents use to reach this cluster (written into registration Secrets).
    pub api_server_url: Option<String>,
    /// The CA of that API server, PEM.
    pub api_server_ca: Option<String>,
    /// BundleDeployment writes in flight (all Bundles together).
    pub write_concurrency: usize,
    /// BundleDeployments planned and not yet written (all Bundles together):
    /// [`crate::plan_budget`].
    pub planned_deployments: usize,
    /// How managed agents (manager-initiated import) run; none: import is off.
    pub agent: Option<AgentSettings>,
    /// Reconciles at once, per reconciler.
    pub workers: Workers,
}

/// Reconciles at once, per reconciler.
#[derive(Debug, Clone, Copy)]
pub struct Workers {
    /// Bundles (their BundleDeployments).
    pub bundles: u16,
    /// Each roll-up (Bundle, Cluster, ClusterGroup, GitRepo, HelmOp status), import and
    /// registration.
    pub rollups: u16,
}

/// How managed agents are run (controller flags, from the chart's image).
#[derive(Debug, Clone)]
pub struct AgentSettings {
    pub image: String,
    pub pull_policy: String,
    pub replicas: i32,
}
