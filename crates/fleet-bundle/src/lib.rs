//! A directory tree (a git checkout or a local directory) to Bundle specs, as Fleet's
//! `fleet apply` builds them: the library behind both gitjob and the `fleet` CLI, so that what
//! a user previews is exactly what gitjob produces.
//!
//! Built so far: bundle naming ([`naming`]), Go `path/filepath` glob semantics for GitRepo
//! `paths` ([`glob`]), bundle discovery ([`discovery`]) and reading a bundle directory with
//! `.fleetignore` ([`files`]). `fleet.yaml` options, resources, overlays and charts follow
//! (issues 5 and 6).

pub mod discovery;
pub mod files;
pub mod glob;
pub mod naming;
#[cfg(test)]
mod testutil;
