//! fleet-agent of fleet-rs: runs in each downstream cluster, registers with the management
//! cluster, deploys its BundleDeployments as Helm releases and reports their status,
//! leader-elected inside its own cluster.
//!
//! - [`credentials`]: the upstream identity (saved, given, or obtained by registration);
//! - [`deploy`]: the BundleDeployment reconciler, [`dependencies`]: `dependsOn`;
//! - [`values_from`]: `helm.valuesFrom` read from the downstream cluster;
//! - [`monitor`]: readiness and drift of deployed objects, [`status`]: what is reported;
//! - [`releases`]: who owns a release name, `keepResources` and `deleteNamespace`;
//! - [`heartbeat`]: `status.agent.lastSeen` of its Cluster.

pub mod credentials;
pub mod dependencies;
pub mod deploy;
pub mod heartbeat;
pub mod monitor;
pub mod releases;
pub mod status;
pub mod values_from;
