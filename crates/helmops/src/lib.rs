//! helmops of fleet-rs: each HelmOp becomes a Bundle with a chart reference whose version is
//! resolved from the Helm repository's `index.yaml`, as Fleet's helmops does, leader-elected.
//!
//! - [`bundle`]: the Bundle a HelmOp becomes, and when to look again (pure);
//! - [`index`]: `index.yaml` and version resolution (exact, semver constraint, newest);
//! - [`reconcile`]: the HelmOp reconciler.

pub mod bundle;
pub mod index;
pub mod reconcile;
