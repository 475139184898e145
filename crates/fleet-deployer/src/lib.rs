//! A BundleDeployment to a Helm release in the downstream cluster, with the real `helm`
//! binary, as Fleet's agent deploys: Helm charts from the bundle or a chart reference are
//! installed as they are; plain manifests and kustomize output are wrapped into a generated
//! chart, so that `helm list -A` shows every bundle under Fleet's release name.
//!
//! Helm 4 is pinned (`e2e/tools/helm`): the agent needs no post-renderer (Helm 4 takes only
//! plugins there), because overlays and kustomize run before Helm, in `fleet-render`.

pub mod chart;
pub mod content;
pub mod drift;
pub mod helm;
pub mod readiness;

pub use helm::{DeployError, Deployed, Deployer, Release, Resolved};
