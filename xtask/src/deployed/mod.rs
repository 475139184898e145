//! `cargo xtask e2e --provider node|kind`: the stack as users deploy it. The image is loaded
//! onto real nodes, the umbrella chart is installed with `helm install` exactly as the README
//! says, and the components run as pods, elect leaders through Leases and hand over when a
//! leader pod is deleted, force-deleted, loses its node or is drained.
//!
//! The scenario ([`scenario`]) is shared; a provider ([`nodes`]: local control planes with
//! kubelets, [`kind`]: kind clusters on Docker) only creates the clusters, loads the image,
//! and stops and starts nodes ([`Clusters`]).

mod drills;
mod inspect;
pub mod kind;
pub mod nodes;
pub mod scenario;

use std::net::IpAddr;
use std::path::PathBuf;

use kube::Client;

/// The release namespace of the chart, as Fleet's.
pub const SYSTEM_NAMESPACE: &str = "cattle-fleet-system";

/// One cluster of a provider.
#[derive(Clone)]
pub struct Cluster {
    pub name: String,
    pub kubeconfig: PathBuf,
    pub client: Client,
    /// The API server's URL as pods of *other* clusters reach it (agents registering).
    pub api_url_for_pods: String,
    /// The PEM CA of that URL (the chart's `apiServerCA`).
    pub ca_pem: String,
    /// An admin kubeconfig that works from pods of the other clusters (a manager-initiated
    /// import's `kubeConfigSecret`).
    pub kubeconfig_for_pods: String,
}

/// What a provider offers the scenario.
pub trait Clusters {
    /// The management cluster (three nodes in zones a, b, c).
    fn upstream(&self) -> &Cluster;
    /// The downstream clusters (a node each).
    fn downstreams(&self) -> &[Cluster];
    /// An address of this machine that every cluster's pods reach (git and Helm servers).
    fn host_ip(&self) -> IpAddr;
    /// Loses an upstream node the way a powered-off machine does.
    fn stop_node(&mut self, node: &str) -> impl Future<Output = anyhow::Result<()>>;
    /// Brings a stopped node back.
    fn start_node(&mut self, node: &str) -> impl Future<Output = anyhow::Result<()>>;
}

/// Prints a scenario line, as the local e2e does.
pub fn say(line: &str) {
    println!("==> {line}");
}
