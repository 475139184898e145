//! A directory tree (a git checkout or a local directory) to Bundle specs, as Fleet's
//! `fleet apply` builds them: the library behind both gitjob and the `fleet` CLI, so that what
//! a user previews is exactly what gitjob produces.
//!
//! Built so far: bundle naming ([`naming`]) and Go `path/filepath` glob semantics for GitRepo
//! `paths` ([`glob`]). Bundle discovery, `fleet.yaml` reading, resources, overlays and
//! `.fleetignore` follow (issues 5 and 6).

pub mod glob;
pub mod naming;
