//! The GitRepo reconciler: resolve the branch or revision (ls-remote), and when the commit or
//! the GitRepo's spec changed, fetch, read the tree with `fleet-bundle`, write the Bundles,
//! and only then record the commit in the status. A restart or failover in the middle of a
//! sync finds the old commit in the status and does the sync again, so no commit is lost.
//!
//! Every error ends up in the GitRepo's conditions (and the logs) while the Bundles of the
//! last good commit stay in place; the GitRepo is polled again after `pollingInterval`
//! (Fleet's 15 s default, with up to 10 % jitter) unless `disablePolling` is set.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fleet_api::{GitRepo, GitRepoRestriction, GitRepoSpec, GitRepoStatus};
use fleet_runtime::WriteError;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};

use crate::context::Context;
use crate::git::{self};
use crate::status::{self, Outcome};
use crate::sync::{source, sync};
use fleet_runtime::bundle_store::Claimed;

/// The field manager of gitjob's writes.
pub const MANAGER: &str = "gitjob";
/// Fleet's polling interval when a GitRepo sets none (or 0).
pub const DEFAULT_POLLING: Duration = Duration::from_secs(15);
/// How long a reconcile keeps looking for a commit a webhook announced (Fleet: 30 s).
const WEBHOOK_WAIT: Duration = Duration::from_secs(30);
/// How often it looks meanwhile (Fleet: 2 s).
const WEBHOOK_RETRY: Duration = Duration::from_secs(2);
/// The longest wait before retrying a failed sync.
const MAX_FAILURE_RETRY: Duration = Duration::from_secs(30);

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

/// Reconciles one GitRepo.
pub async fn reconcile(gitrepo: Arc<GitRepo>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = gitrepo.namespace().unwrap_or_default();
    let name = gitrepo.name_any();
    if gitrepo.metadata.deletion_timestamp.is_some() {
        // Its Bundles go with it: they are owned by it.
        return Ok(Action::await_change());
    }
    // Another replica's shard (dynamic shards): its owner reconciles it.
    let key = format!("{namespace}/{name}");
    let Some(claim) = Claimed::for_key(&ctx.claims, &ctx.gate, &ctx.client, &key) else {
        return Ok(Action::await_change());
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
    claim: &Claimed,
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
