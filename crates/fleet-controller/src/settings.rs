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
    /// How managed agents (manager-initiated import) run; none: import is off.
    pub agent: Option<AgentSettings>,
}

/// How managed agents are run (controller flags, from the chart's image).
#[derive(Debug, Clone)]
pub struct AgentSettings {
    pub image: String,
    pub pull_policy: String,
    pub replicas: i32,
}
