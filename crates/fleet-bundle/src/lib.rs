//! A directory tree (a git checkout or a local directory) to Bundle specs, as Fleet's
//! `fleet apply` builds them: the library behind both gitjob and the `fleet` CLI, so that what
//! a user previews is exactly what gitjob produces.
//!
//! Built so far: bundle naming ([`naming`]), Go `path/filepath` glob semantics for GitRepo
//! `paths` ([`glob`]), bundle discovery ([`discovery`]), reading a bundle directory with
//! `.fleetignore` ([`files`]), and a directory with its `fleet.yaml` and the apply options to a
//! Bundle ([`read`]). Remote charts, kustomize and overlays, values files into Secrets, and
//! the `fleet` CLI follow (issues 5 and 6).

pub mod discovery;
pub mod files;
pub mod glob;
pub mod manifests;
pub mod naming;
pub mod read;
pub mod repo;
pub mod store;
#[cfg(test)]
mod testutil;
pub mod values_files;
