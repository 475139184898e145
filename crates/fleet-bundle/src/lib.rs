//! A directory tree (a git checkout or a local directory) to Bundle specs, as Fleet's
//! `fleet apply` builds them: the library behind both gitjob and the `fleet` CLI, so that what
//! a user previews is exactly what gitjob produces.
//!
//! - [`glob`]: Go `path/filepath` glob semantics for GitRepo `paths`;
//!   [`discovery`]: which directories are bundles; [`repo`]: a whole tree to its Bundles.
//! - [`files`]: a bundle directory's files, with `.fleetignore` and size limits;
//!   [`read`]: a directory with its `fleet.yaml` and the apply options to a Bundle;
//!   [`values_files`]: `helm.valuesFiles` merged into the values, as Fleet's reader does;
//!   [`manifests`]: which files are plain manifests, checked when the Bundle is built.
//!
//! Nothing here talks to a cluster (`fleet_runtime::bundle_store` writes the Bundles); the
//! programs it runs are helm and git, to download charts ([`remote_charts`], with credentials
//! for all bundles or per bundle path, [`chart_credentials`]) and chart dependencies
//! ([`dependencies`]) into a Bundle, when given helm.

pub mod chart_credentials;
pub mod dependencies;
pub mod discovery;
pub mod files;
pub mod glob;
pub mod helm;
pub mod manifests;
pub mod read;
pub mod remote_charts;
pub mod repo;
#[cfg(test)]
mod testutil;
pub mod values_files;
