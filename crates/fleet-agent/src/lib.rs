//! fleet-agent of fleet-rs: runs in each downstream cluster, registers with the management
//! cluster, deploys its BundleDeployments as Helm releases and reports their status,
//! leader-elected inside its own cluster.
//!
//! - [`credentials`]: the upstream identity (saved, given, or obtained by registration);
//! - [`deploy`]: the BundleDeployment reconciler;
//! - [`heartbeat`]: `status.agent.lastSeen` of its Cluster.

pub mod credentials;
pub mod deploy;
pub mod heartbeat;
