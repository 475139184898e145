//! What a cluster receives from a Bundle, computed the same way by `fleet test`,
//! `fleet target`, the controller and the agent:
//!
//! - [`target`]: which targets match a cluster, and the options they merge in (pure);
//! - [`values`]: Helm values per cluster (`${ .ClusterName }` and friends);
//! - [`overlay`]: raw-YAML overlays (`overlays/<name>/`, `_patch` files);
//! - [`render`]: the manifests, with the real `helm template` and `kustomize build`;
//! - [`deployments`]: a Bundle and its candidate Clusters to BundleDeployments and a Content;
//! - [`rollout`]: which clusters get a change now under the Bundle's `rolloutStrategy`;
//! - [`mappings`]: the namespaces BundleNamespaceMappings open to a bundle.

pub mod deployments;
pub mod mappings;
pub mod overlay;
pub mod render;
pub mod rollout;
pub mod target;
pub mod template;
pub mod values;

/// A bundle's files: path (relative to the bundle, `/`-separated) → content.
pub type Files = fleet_bundle::files::Files;
