//! What gitjob's reconciles share during one leadership term: the client, the settings from
//! its flags, git slots and per-repository locks, the claims its writes go out under, and
//! the restrictions cache.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fleet_api::GitRepoRestriction;
use fleet_bundle::files::SizeLimits;
use fleet_election::shards::Claims;
use fleet_runtime::WriteGate;
use fleet_runtime::events::Events;
use kube::Client;
use kube::runtime::reflector::Store;
use tokio::sync::{Mutex, Semaphore};

use crate::git::{self, GitError};
use crate::metrics::Metrics;

/// The reporting controller of gitjob's Events.
const EVENTS_CONTROLLER: &str = "fleet.cattle.io/gitjob";

/// How gitjob works, from its flags.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Bare repositories are cached here, one per URL; trees are exported below it.
    pub cache_dir: PathBuf,
    /// Limit of one git network operation (Fleet's `gitClientTimeout`, 30 s).
    pub git_timeout: Duration,
    /// Git operations running at once.
    pub concurrent_git: usize,
    /// How much of a repository is read (per file, per bundle), checked before reading.
    pub limits: SizeLimits,
    /// The helm that fetches chart dependencies into the Bundles (none: the agent does).
    pub helm: Option<PathBuf>,
}

/// What the reconciler shares across GitRepos during one leadership term.
pub struct Context {
    pub(crate) client: Client,
    pub(crate) settings: Settings,
    git_slots: Semaphore,
    repo_locks: std::sync::Mutex<HashMap<PathBuf, Arc<Mutex<()>>>>,
    pub(crate) metrics: Metrics,
    pub(crate) claims: Claims,
    /// Every write goes through it, under the GitRepo's claim.
    pub(crate) gate: WriteGate,
    /// Events for errors the GitRepo's owner should act on.
    pub(crate) events: Events,
    /// GitRepoRestrictions (warm cache).
    pub(crate) restrictions: Store<GitRepoRestriction>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// A context whose writes go out under `claims` (one Lease's term, or dynamic shards).
    pub fn new(
        client: Client,
        settings: Settings,
        metrics: Metrics,
        claims: Claims,
        gate: WriteGate,
        restrictions: Store<GitRepoRestriction>,
    ) -> Self {
        let client_for_events = client.clone();
        Self {
            client,
            git_slots: Semaphore::new(settings.concurrent_git.max(1)),
            settings,
            repo_locks: std::sync::Mutex::new(HashMap::new()),
            metrics,
            claims,
            gate,
            restrictions,
            events: Events::new(client_for_events, EVENTS_CONTROLLER),
        }
    }

    /// Runs a blocking git operation with a slot, a per-cache lock and the timeout; on
    /// timeout the operation is told to stop at its next progress callback.
    pub(crate) async fn git<T, F>(&self, url: &str, op: F) -> Result<T, GitError>
    where
        T: Send + 'static,
        F: FnOnce(&AtomicBool) -> Result<T, GitError> + Send + 'static,
    {
        let lock = {
            let mut locks = self
                .repo_locks
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            locks
                .entry(PathBuf::from(url))
                .or_insert_with(|| Arc::new(Mutex::new(())))
                .clone()
        };
        let _repo = lock.lock().await;
        let _slot = self
            .git_slots
            .acquire()
            .await
            .map_err(|_| GitError::Cancelled)?;
        let cancel = Arc::new(AtomicBool::new(false));
        let flag = cancel.clone();
        let task = tokio::task::spawn_blocking(move || op(&flag));
        match tokio::time::timeout(self.settings.git_timeout, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(GitError::Remote {
                url: git::redact_url(url),
                message: format!("git task failed: {join}"),
            }),
            Err(_) => {
                cancel.store(true, Ordering::Relaxed);
                Err(GitError::Remote {
                    url: git::redact_url(url),
                    message: format!("timed out after {}s", self.settings.git_timeout.as_secs()),
                })
            }
        }
    }
}
