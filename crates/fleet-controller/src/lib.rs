//! fleet-controller of fleet-rs: decides what runs where and rolls the truth back up, as
//! Fleet's controller does, leader-elected. What a Bundle should produce is computed by
//! `fleet_render::deployments` (pure, shared with `fleet target`).
//!
//! - [`summary`]: BundleDeployment states and summaries (pure);
//! - [`bundles`]: the Bundle reconciler (writes BundleDeployments, Content, Bundle status);
//! - [`helm_secrets`]: Helm repository credentials copied next to HelmOp BundleDeployments;
//! - [`mappings`]: BundleNamespaceMappings (which other namespaces' Clusters a bundle targets);
//! - [`clusters`]: Cluster namespaces and status (agent last seen), ClusterGroup status;
//! - [`rollups`]: GitRepo and HelmOp status roll-ups from BundleDeployments;
//! - [`registration`]: registration tokens and agent registrations;
//! - [`bootstrap`]: the `fleet-local` workspace with the management cluster.

pub mod bootstrap;
pub mod bundles;
pub mod clusters;
pub mod context;
pub mod error;
pub mod helm_secrets;
pub mod import;
pub mod mappings;
pub mod memory;
pub mod metrics;
pub mod namespaces;
pub mod registration;
pub mod rollups;
pub mod settings;
pub mod summary;
