//! fleet-agent of fleet-rs: runs in each downstream cluster, registers with the management
//! cluster, deploys its BundleDeployments as Helm releases and reports their status,
//! leader-elected inside its own cluster.
//!
//! - [`credentials`]: the upstream identity (saved, given, or obtained by registration);
//! - [`deploy`]: the BundleDeployment reconciler;
//! - [`heartbeat`]: `status.agent.lastSeen` of its Cluster;
//! - [`monitor`]: drift of deployed objects (`modifiedStatus`), corrected with `correctDrift`.

pub mod credentials;
pub mod deploy;
pub mod heartbeat;
pub mod monitor;
