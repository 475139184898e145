//! fleet-agent of fleet-rs: runs in each downstream cluster, registers with the management
//! cluster, deploys its BundleDeployments as Helm releases and reports their status,
//! leader-elected inside its own cluster.
//!
//! Two roles, each with its own Lease, on different replicas when there are two or more:
//! deploying ([`deploy`]) and monitoring ([`monitor`]).
//!
//! - [`credentials`]: the upstream identity (saved, given, or obtained by registration);
//! - [`deploy`]: the deploying role's BundleDeployment reconciler, [`dependencies`]:
//!   `dependsOn`; [`values_from`]: `helm.valuesFrom` read from the downstream cluster;
//! - [`monitor`]: the monitoring role's reconciler; [`inspect`]: readiness and drift of
//!   deployed objects; [`status`]: what is reported, [`report`]: writing it;
//! - [`releases`]: who owns a release name, `keepResources` and `deleteNamespace`;
//! - [`heartbeat`]: `status.agent.lastSeen` of its Cluster;
//! - [`controller`]: how a role runs its reconciler.

pub mod controller;
pub mod credentials;
pub mod dependencies;
pub mod deploy;
mod error;
pub mod heartbeat;
pub mod inspect;
pub mod monitor;
pub mod releases;
pub mod report;
pub mod status;
pub mod values_from;

pub use error::Error;
