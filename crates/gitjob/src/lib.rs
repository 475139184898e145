//! gitjob of fleet-rs: turns each GitRepo into Bundles, as Fleet's gitjob and `fleet apply`
//! do, but in process (no Job pods) and leader-elected.
//!
//! - [`git`]: ls-remote, fetch into a bare cache, export a commit's tree (libgit2);
//!   [`submodules`]: a commit's submodules fetched and exported with it;
//! - [`credentials`]: a GitRepo's Secret to git credentials;
//! - [`reconcile`]: the GitRepo reconciler (poll, fetch, build, write Bundles, status);
//!   [`controller`]: what it watches, for one term; [`context`]: what a term's reconciles
//!   share; [`sync`]: a commit to its Bundles;
//! - [`webhook`]: push webhooks from GitHub, GitLab, Bitbucket, Gogs/Gitea and Azure DevOps,
//!   served by every replica.

pub mod context;
pub mod controller;
pub mod credentials;
pub mod git;
pub mod known_hosts;
pub mod metrics;
pub mod reconcile;
pub mod restrictions;
pub mod status;
pub mod submodules;
pub mod sync;
pub mod tls;
pub mod webhook;
