//! The GitRepo reconciler: resolve the branch or revision (ls-remote), and when the commit or
//! the GitRepo's spec changed, fetch, read the tree with `fleet-bundle`, write the Bundles,
//! and only then record the commit in the status. A restart or failover in the middle of a
//! sync finds the old commit in the status and does the sync again, so no commit is lost.
//!
//! Every error ends up in the GitRepo's conditions (and the logs) while the Bundles of the
//! last good commit stay in place; the GitRepo is polled again after `pollingInterval`
//! (Fleet's 15 s default, with up to 10 % jitter) unless `disablePolling` is set.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fleet_api::{GitRepo, GitRepoRestriction, GitRepoSpec, GitRepoStatus};
use fleet_bundle::files::SizeLimits;
pub use fleet_election::shards::Claims;
use fleet_runtime::bundle_store::BundleStore;
use fleet_runtime::events::Events;
use fleet_runtime::{WriteError, WriteGate, Writer};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::Store;
use kube::{Api, Client, ResourceExt};
use tokio::sync::{Mutex, Semaphore};

use crate::git::{self, GitError};
use crate::metrics::Metrics;
use crate::status::{self, Outcome};
use crate::sync::{source, sync};

/// The field manager of gitjob's writes.
pub const MANAGER: &str = "gitjob";
/// The reporting controller of gitjob's Events.
const EVENTS_CONTROLLER: &str = "fleet.cattle.io/gitjob";
/// Fleet's polling interval when a GitRepo sets none (or 0).
pub const DEFAULT_POLLING: Duration = Duration::from_secs(15);
/// How long a reconcile keeps looking for a commit a webhook announced (Fleet: 30 s).
const WEBHOOK_WAIT: Duration = Duration::from_secs(30);
/// How often it looks meanwhile (Fleet: 2 s).
const WEBHOOK_RETRY: Duration = Duration::from_secs(2);
/// The longest wait before retrying a failed sync.
const MAX_FAILURE_RETRY: Duration = Duration::from_secs(30);

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
}

/// What the reconciler shares across GitRepos during one leadership term.
pub struct Context {
    client: Client,
    pub(crate) settings: Settings,
    git_slots: Semaphore,
    repo_locks: std::sync::Mutex<HashMap<PathBuf, Arc<Mutex<()>>>>,
    pub(crate) metrics: Metrics,
    claims: Claims,
    /// Every write goes through it, under the GitRepo's claim.
    gate: WriteGate,
    /// Events for errors the GitRepo's owner should act on.
    events: Events,
    /// GitRepoRestrictions (warm cache).
    restrictions: Store<GitRepoRestriction>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// A reconcile that could not finish (retried with backoff by the controller; a write refused
/// because the claim is gone is the new owner's to redo).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("writing the status of GitRepo {namespace}/{name}: {source}")]
    Status {
        namespace: String,
        name: String,
        source: WriteError,
    },
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

/// One reconcile's claim, and the Bundle writer gated by it.
pub(crate) struct Claim {
    pub writer: Writer,
    pub store: BundleStore,
}

/// Reconciles one GitRepo.
pub async fn reconcile(gitrepo: Arc<GitRepo>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = gitrepo.namespace().unwrap_or_default();
    let name = gitrepo.name_any();
    if gitrepo.metadata.deletion_timestamp.is_some() {
        // Its Bundles go with it: they are owned by it.
        return Ok(Action::await_change());
    }
    // Another replica's shard (dynamic shards): its owner reconciles it.
    let Some(claim) = ctx.claims.claim(&format!("{namespace}/{name}")) else {
        return Ok(Action::await_change());
    };
    let writer = ctx.gate.writer(claim);
    let claim = Claim {
        store: BundleStore::new(ctx.client.clone(), writer.clone()),
        writer,
    };
    let generation = gitrepo.metadata.generation.unwrap_or_default();
    let current = gitrepo.status.clone().unwrap_or_default();
    let started = Instant::now();

    let (outcome, wrote) = attempt(&gitrepo, &current, generation, &ctx, &claim).await;
    let result = match (&outcome, wrote) {
        (Outcome::Synced { .. }, true) => "synced",
        (Outcome::Synced { .. }, false) => "unchanged",
        (Outcome::PollFailed { .. }, _) => "poll_failed",
        (Outcome::SyncFailed { .. }, _) => "sync_failed",
        (Outcome::Rejected { .. }, _) => "rejected",
    };
    ctx.metrics.reconciled(result);
    match &outcome {
        Outcome::Synced { commit, .. } if wrote => {
            ctx.metrics
                .sync_seconds
                .observe(started.elapsed().as_secs_f64());
            tracing::info!(gitrepo = %name, %namespace, %commit, elapsed_ms = started.elapsed().as_millis() as u64, "synced");
        }
        Outcome::Synced { .. } => {}
        Outcome::PollFailed { message }
        | Outcome::SyncFailed { message, .. }
        | Outcome::Rejected { message } => {
            tracing::warn!(gitrepo = %name, %namespace, error = %message, "sync failed");
            let (reason, action) = match &outcome {
                Outcome::PollFailed { .. } => ("PollFailed", "Fetch"),
                Outcome::Rejected { .. } => ("Rejected", "Check"),
                _ => ("SyncFailed", "Sync"),
            };
            ctx.events
                .warn(&claim.writer, gitrepo.as_ref(), reason, action, message)
                .await;
        }
    }

    let now = jiff::Timestamp::now().to_string();
    let next = status::next_status(&current, generation, &outcome, &now);
    if next != current {
        let api: Api<GitRepo> = Api::namespaced(ctx.client.clone(), &namespace);
        let patch = Patch::Apply(status::patch(&next));
        let params = PatchParams::apply(MANAGER).force();
        let written = claim
            .writer
            .patch_status(&api, &name, &params, &patch)
            .await;
        if written.as_ref().is_err_and(WriteError::is_not_leading) {
            return Ok(Action::await_change());
        }
        written.map_err(|source| Error::Status {
            namespace: namespace.clone(),
            name: name.clone(),
            source,
        })?;
        ctx.metrics.status_writes.inc();
    }
    Ok(requeue(&gitrepo.spec, &next, &outcome, &name))
}

/// When to look again.
fn requeue(spec: &GitRepoSpec, status: &GitRepoStatus, outcome: &Outcome, name: &str) -> Action {
    let polling = polling_interval(spec, status);
    if awaiting_webhook_commit(status) {
        return Action::requeue(WEBHOOK_RETRY);
    }
    match outcome {
        Outcome::Synced { .. } if spec.disable_polling => Action::await_change(),
        Outcome::Synced { .. } => Action::requeue(with_jitter(polling, name)),
        _ => Action::requeue(polling.min(MAX_FAILURE_RETRY)),
    }
}

/// A webhook announced a commit that is not synced yet, recently enough to keep looking.
fn awaiting_webhook_commit(status: &GitRepoStatus) -> bool {
    let (Some(webhook_commit), Some(time)) = (&status.webhook_commit, &status.last_webhook_time)
    else {
        return false;
    };
    if status.commit.as_ref() == Some(webhook_commit) {
        return false;
    }
    time.parse::<jiff::Timestamp>().is_ok_and(|t| {
        jiff::Timestamp::now().duration_since(t)
            < jiff::SignedDuration::try_from(WEBHOOK_WAIT).unwrap_or_default()
    })
}

/// The GitRepo's `pollingInterval`; when unset, zero or invalid: Fleet's default, or
/// [`WEBHOOK_POLLING`] once webhooks deliver for the repository (Fleet writes `1h` into the
/// spec then; here the spec stays the user's and only the effective interval changes).
pub fn polling_interval(spec: &GitRepoSpec, status: &GitRepoStatus) -> Duration {
    spec.polling_interval
        .as_deref()
        .and_then(|text| fleet_api::duration::parse_go_duration(text).ok())
        .filter(|d| !d.is_zero())
        .unwrap_or(if status.last_webhook_time.is_some() {
            WEBHOOK_POLLING
        } else {
            DEFAULT_POLLING
        })
}

/// Polling once webhooks deliver and no `pollingInterval` is set (Fleet's 1 h).
pub const WEBHOOK_POLLING: Duration = Duration::from_secs(3600);

/// `interval` plus up to 10 %, spread by GitRepo so that repositories do not poll in step.
fn with_jitter(interval: Duration, name: &str) -> Duration {
    let seed = name
        .bytes()
        .fold(jiff::Timestamp::now().subsec_nanosecond() as u64, |h, b| {
            h.wrapping_mul(31).wrapping_add(u64::from(b))
        });
    interval + interval.mul_f64((seed % 1000) as f64 / 10_000.0)
}

/// Resolves, and if needed syncs. The bool says whether Bundles were (re)written.
async fn attempt(
    gitrepo: &GitRepo,
    current: &GitRepoStatus,
    generation: i64,
    ctx: &Context,
    claim: &Claim,
) -> (Outcome, bool) {
    let namespace = gitrepo.namespace().unwrap_or_default();
    let restrictions = ctx.restrictions.state();
    let in_namespace: Vec<&GitRepoRestriction> = restrictions
        .iter()
        .filter(|r| r.metadata.namespace.as_deref() == Some(namespace.as_str()))
        .map(AsRef::as_ref)
        .collect();
    // With the restrictions' defaults (serviceAccount, clientSecretName) filled in.
    let (gitrepo, selector) = match crate::restrictions::authorize(&in_namespace, &gitrepo.spec) {
        Ok(allowed) => (
            &GitRepo {
                spec: allowed.spec,
                ..gitrepo.clone()
            },
            allowed.allowed_target_namespace_selector,
        ),
        Err(message) => return (Outcome::Rejected { message }, false),
    };
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let source = match source(&gitrepo.spec, &secrets, &namespace).await {
        Ok(source) => source,
        Err(message) => return (Outcome::PollFailed { message }, false),
    };
    let resolving = source.clone();
    let commit = match ctx
        .git(&source.url, move |cancel| git::resolve(&resolving, cancel))
        .await
    {
        Ok(commit) => commit,
        Err(e) => {
            return (
                Outcome::PollFailed {
                    message: e.to_string(),
                },
                false,
            );
        }
    };
    if status::is_synced(current, generation, &commit) {
        return (
            Outcome::Synced {
                commit,
                unmatched: None,
            },
            false,
        );
    }
    match sync(gitrepo, selector, &source, &commit, ctx, claim).await {
        Ok(unmatched) => (
            Outcome::Synced {
                commit,
                unmatched: Some(unmatched),
            },
            true,
        ),
        Err(message) => (Outcome::SyncFailed { commit, message }, false),
    }
}

/// How the controller retries a reconcile that returned an error.
pub fn error_policy(gitrepo: Arc<GitRepo>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(gitrepo = %gitrepo.name_any(), %error, "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> GitRepoSpec {
        GitRepoSpec {
            repo: "https://example.com/r".to_owned(),
            ..GitRepoSpec::default()
        }
    }

    #[test]
    fn polling_defaults_like_fleet() {
        let mut spec = spec();
        let mut status = GitRepoStatus::default();
        assert_eq!(polling_interval(&spec, &status), DEFAULT_POLLING);
        spec.polling_interval = Some("0s".to_owned());
        assert_eq!(polling_interval(&spec, &status), DEFAULT_POLLING);
        status.last_webhook_time = Some("2026-11-23T00:00:00Z".to_owned());
        assert_eq!(
            polling_interval(&spec, &status),
            WEBHOOK_POLLING,
            "webhooks deliver"
        );
        spec.polling_interval = Some("1m30s".to_owned());
        assert_eq!(polling_interval(&spec, &status), Duration::from_secs(90));
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        for name in ["a", "b", "some-repo"] {
            let d = with_jitter(Duration::from_secs(10), name);
            assert!(
                d >= Duration::from_secs(10) && d <= Duration::from_secs(11),
                "{d:?}"
            );
        }
    }

    #[test]
    fn a_recent_unsynced_webhook_commit_is_awaited() {
        let mut status = GitRepoStatus {
            commit: Some("old".to_owned()),
            webhook_commit: Some("new".to_owned()),
            last_webhook_time: Some(jiff::Timestamp::now().to_string()),
            ..GitRepoStatus::default()
        };
        assert!(awaiting_webhook_commit(&status));
        status.commit = Some("new".to_owned());
        assert!(!awaiting_webhook_commit(&status));
        status.commit = Some("old".to_owned());
        status.last_webhook_time = Some("2020-01-01T00:00:00Z".to_owned());
        assert!(!awaiting_webhook_commit(&status));
    }
}
