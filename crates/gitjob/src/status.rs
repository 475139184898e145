//! A GitRepo's status after a sync attempt, computed purely so that an attempt that changes
//! nothing produces an equal status, and so no write.
//!
//! gitjob owns these status fields: `commit` (only ever the commit whose Bundles are written),
//! `pollingCommit`, `observedGeneration`, `gitJobStatus`, `display.message`, `display.error`
//! and the conditions `GitPolling`, `Accepted`, `Stalled`, `Reconciling` and `PathsMatched`.
//! As in Fleet, `Ready` is the controller's (from the Bundles and their deployments, and
//! False while `Stalled` is True); `webhookCommit` and `lastWebhookTime` belong to the webhook
//! receiver. Neither is ever written here.

use fleet_api::GitRepo;
use fleet_api::conditions::{self, Verdict};
use fleet_api::labels::conditions::{ACCEPTED, GIT_POLLING, READY, RECONCILING, STALLED};
use fleet_api::{Condition, GitRepoStatus};
use kube::Resource as _;
use serde_json::json;

/// gitjob's warning condition: False while a `paths` entry matches nothing.
pub const PATHS_MATCHED: &str = "PathsMatched";

/// Where a sync attempt stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The Bundles of `commit` are written. `unmatched`: the `paths` entries that matched no
    /// directory (a typo), when the tree was read (`None`: not read again, nothing changes).
    Synced {
        commit: String,
        unmatched: Option<Vec<String>>,
    },
    /// Credentials could not be read or the repository could not be resolved.
    PollFailed { message: String },
    /// The commit is known, but its Bundles could not be built or written; the Bundles of
    /// the last good commit stay in place.
    SyncFailed { commit: String, message: String },
    /// A GitRepoRestriction refuses the GitRepo: nothing is fetched; the Bundles written
    /// before stay in place.
    Rejected { message: String },
}

/// The status after `outcome`, from the current one. Timestamps move only when a condition
/// changes.
pub fn next_status(
    current: &GitRepoStatus,
    generation: i64,
    outcome: &Outcome,
    now: &str,
) -> GitRepoStatus {
    let mut status = current.clone();
    let conditions = &mut status.base.conditions;
    match outcome {
        Outcome::Synced { commit, unmatched } => {
            status.commit = Some(commit.clone());
            status.polling_commit = Some(commit.clone());
            status.observed_generation = generation;
            status.git_job_status = Some("Current".to_owned());
            set(conditions, GIT_POLLING, true, None, now);
            set(conditions, ACCEPTED, true, None, now);
            set(conditions, STALLED, false, None, now);
            set(conditions, RECONCILING, false, None, now);
            status.base.display.error = false;
            status.base.display.message = None;
            // A typo in `paths` is a warning, not a failure (Stalled stays False, as Fleet
            // reports it), and `PathsMatched` says which entries found nothing.
            if let Some(unmatched) = unmatched {
                let message = (!unmatched.is_empty()).then(|| {
                    format!(
                        "paths entries matching no directory of the repository: {}",
                        unmatched.join(", ")
                    )
                });
                set(
                    conditions,
                    PATHS_MATCHED,
                    unmatched.is_empty(),
                    message.as_deref(),
                    now,
                );
            }
            if let Some(condition) = conditions
                .iter()
                .find(|c| c.type_ == PATHS_MATCHED && c.status == "False")
            {
                status.base.display.message = condition.message.clone();
            }
        }
        Outcome::PollFailed { message } => {
            status.git_job_status = Some("Failed".to_owned());
            set(conditions, GIT_POLLING, false, Some(message), now);
            set(conditions, STALLED, true, Some(message), now);
            status.base.display.error = true;
            status.base.display.message = Some(message.clone());
        }
        Outcome::Rejected { message } => {
            status.git_job_status = Some("Failed".to_owned());
            set(conditions, ACCEPTED, false, Some(message), now);
            set(conditions, STALLED, true, Some(message), now);
            status.base.display.error = true;
            status.base.display.message = Some(message.clone());
        }
        Outcome::SyncFailed { commit, message } => {
            status.polling_commit = Some(commit.clone());
            status.git_job_status = Some("Failed".to_owned());
            set(conditions, GIT_POLLING, true, None, now);
            set(conditions, ACCEPTED, false, Some(message), now);
            set(conditions, STALLED, true, Some(message), now);
            status.base.display.error = true;
            status.base.display.message = Some(message.clone());
        }
    }
    status
}

/// The server-side apply body of gitjob's fields of `status` (and only those: the controller
/// applies the roll-up fields and `Ready`, the webhook receiver its own). A field gitjob no
/// longer sets is left out, and so removed.
pub fn patch(status: &GitRepoStatus) -> serde_json::Value {
    let conditions: Vec<&Condition> = status
        .base
        .conditions
        .iter()
        .filter(|c| c.type_ != READY)
        .collect();
    let mut display = json!({"error": status.base.display.error});
    if let Some(message) = &status.base.display.message {
        display["message"] = json!(message);
    }
    let mut fields = json!({
        "observedGeneration": status.observed_generation,
        "conditions": conditions,
        "display": display,
    });
    for (key, value) in [
        ("commit", &status.commit),
        ("pollingCommit", &status.polling_commit),
        ("gitJobStatus", &status.git_job_status),
    ] {
        if let Some(value) = value {
            fields[key] = json!(value);
        }
    }
    json!({
        "apiVersion": GitRepo::api_version(&()),
        "kind": GitRepo::kind(&()),
        "status": fields,
    })
}

/// Whether a sync ended well for this commit and generation (nothing left to do).
pub fn is_synced(status: &GitRepoStatus, generation: i64, commit: &str) -> bool {
    status.commit.as_deref() == Some(commit)
        && status.observed_generation == generation
        && status.git_job_status.as_deref() == Some("Current")
}

/// Sets a condition as Fleet's `genericcondition` does; the reason is `Error` only with an
/// error message (`Stalled=False` is no error).
fn set(conditions: &mut Vec<Condition>, type_: &str, ok: bool, message: Option<&str>, now: &str) {
    let verdict = Verdict {
        ok,
        reason: message.is_some().then(|| "Error".to_owned()),
        message: message.map(str::to_owned),
    };
    conditions::set(conditions, type_, verdict, now);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn condition<'a>(status: &'a GitRepoStatus, type_: &str) -> &'a Condition {
        status
            .base
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
            .expect("condition")
    }

    #[test]
    fn a_repeated_outcome_changes_nothing() {
        let synced = Outcome::Synced {
            commit: "c1".to_owned(),
            unmatched: Some(Vec::new()),
        };
        let first = next_status(&GitRepoStatus::default(), 3, &synced, "t1");
        assert_eq!(first.commit.as_deref(), Some("c1"));
        assert!(is_synced(&first, 3, "c1"));
        assert!(!is_synced(&first, 4, "c1"));
        let again = next_status(&first, 3, &synced, "t2");
        assert_eq!(again, first);
    }

    #[test]
    fn a_path_that_matches_nothing_is_a_warning_until_fixed() {
        let typo = Outcome::Synced {
            commit: "c1".to_owned(),
            unmatched: Some(vec!["aps/*".to_owned()]),
        };
        let warned = next_status(&GitRepoStatus::default(), 1, &typo, "t1");
        assert_eq!(
            condition(&warned, STALLED).status,
            "False",
            "not a failure, as in Fleet"
        );
        let paths = condition(&warned, PATHS_MATCHED);
        assert_eq!(paths.status, "False");
        assert!(
            paths
                .message
                .as_deref()
                .is_some_and(|m| m.contains("aps/*"))
        );
        assert_eq!(warned.base.display.message, paths.message);
        // An unchanged poll (tree not read) keeps the warning; a fixed spec clears it.
        let unread = Outcome::Synced {
            commit: "c1".to_owned(),
            unmatched: None,
        };
        assert_eq!(next_status(&warned, 1, &unread, "t2"), warned);
        let fixed = Outcome::Synced {
            commit: "c1".to_owned(),
            unmatched: Some(Vec::new()),
        };
        let cleared = next_status(&warned, 2, &fixed, "t3");
        assert_eq!(condition(&cleared, PATHS_MATCHED).status, "True");
        assert_eq!(cleared.base.display.message, None);
    }

    #[test]
    fn a_failure_keeps_the_last_good_commit_and_says_why() {
        let good = next_status(
            &GitRepoStatus::default(),
            1,
            &Outcome::Synced {
                commit: "c1".to_owned(),
                unmatched: None,
            },
            "t1",
        );
        let failed = next_status(
            &good,
            1,
            &Outcome::SyncFailed {
                commit: "c2".to_owned(),
                message: "app/fleet.yaml:3: bad".to_owned(),
            },
            "t2",
        );
        assert_eq!(failed.commit.as_deref(), Some("c1"));
        assert_eq!(failed.polling_commit.as_deref(), Some("c2"));
        let stalled = condition(&failed, STALLED);
        assert_eq!(stalled.status, "True");
        assert_eq!(stalled.message.as_deref(), Some("app/fleet.yaml:3: bad"));
        assert_eq!(stalled.last_transition_time.as_deref(), Some("t2"));
        assert!(!is_synced(&failed, 1, "c2"));
    }

    #[test]
    fn the_patch_holds_only_gitjobs_fields() {
        let status = GitRepoStatus {
            webhook_commit: Some("w".to_owned()),
            ..GitRepoStatus::default()
        };
        let patch = patch(&status);
        assert!(patch["status"].get("webhookCommit").is_none());
        assert!(
            patch["status"].get("commit").is_none(),
            "unset: not applied"
        );
        let synced = next_status(
            &status,
            1,
            &Outcome::Synced {
                commit: "c1".to_owned(),
                unmatched: None,
            },
            "t1",
        );
        let mut with_ready = synced.clone();
        with_ready.base.conditions.push(Condition {
            type_: READY.to_owned(),
            status: "True".to_owned(),
            ..Condition::default()
        });
        let patch = super::patch(&with_ready);
        assert_eq!(patch["status"]["commit"], "c1");
        let types: Vec<&str> = patch["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["type"].as_str())
            .collect();
        assert!(
            !types.contains(&READY),
            "Ready is the controller's: {types:?}"
        );
    }
}
