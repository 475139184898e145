//! The BundleDeployment status the agent reports, built from a deploy's outcome and an
//! [`Inspection`] of the deployed objects: `appliedDeploymentID`, `release`, `ready` and
//! `nonReadyStatus`, `nonModified` and `modifiedStatus`, `resources`, the `Deployed`,
//! `Monitored` and `Ready` conditions and `display`. Lists are cut at Fleet's 10 entries
//! (`incompleteState`). Unchanged conditions keep their timestamps, so an unchanged status
//! builds the same patch and is not written. Pure.

use fleet_api::conditions::{self, Verdict};
use fleet_api::{BundleDeploymentStatus, Condition};
use serde_json::{Value, json};

use crate::inspect::{Inspection, non_ready_message};

/// At most this many entries in `nonReadyStatus` and `modifiedStatus`, as in Fleet.
pub const MAX_LISTED: usize = 10;

/// The status fields an inspection gives, as a merge patch; `None` when the status holds
/// them already. `deployed` is the release just installed (`None`: nothing was installed
/// this time, the patch only reflects what the objects look like now).
pub fn observed(
    previous: &BundleDeploymentStatus,
    inspection: &Inspection,
    deployed: Option<(&str, &str)>,
    now: &str,
) -> Option<Value> {
    let ready = inspection.non_ready.is_empty();
    let non_modified = inspection.modified.is_empty();
    let message = non_ready_message(&inspection.non_ready);
    let conditions = &previous.conditions;
    let mut next = vec![
        condition(conditions, "Ready", ready, message.as_ref(), now),
        condition(conditions, "Monitored", true, None, now),
    ];
    if deployed.is_some() {
        next.push(condition(conditions, "Deployed", true, None, now));
    }
    // Conditions not reported here (Deployed, between deploys) stay as they were.
    let mut merged: Vec<Condition> = conditions
        .iter()
        .filter(|c| !next.iter().any(|n| n.type_ == c.type_))
        .cloned()
        .collect();
    merged.extend(next);
    merged.sort_by(|a, b| a.type_.cmp(&b.type_));
    let mut non_ready = inspection.non_ready.clone();
    let mut modified = inspection.modified.clone();
    let incomplete = non_ready.len() > MAX_LISTED || modified.len() > MAX_LISTED;
    non_ready.truncate(MAX_LISTED);
    modified.truncate(MAX_LISTED);
    let state = match (ready, non_modified) {
        (false, _) => "NotReady",
        (true, false) => "Modified",
        (true, true) => "Ready",
    };
    let unchanged = deployed.is_none()
        && previous.ready == ready
        && previous.non_modified == non_modified
        && previous.non_ready_status == non_ready
        && previous.modified_status == modified
        && previous.resources == inspection.resources
        && previous.incomplete_state == incomplete
        && previous.display.state.as_deref() == Some(state)
        && sorted(conditions) == merged;
    if unchanged {
        return None;
    }
    let mut status = json!({
        "ready": ready,
        "nonModified": non_modified,
        "nonReadyStatus": non_ready,
        "modifiedStatus": modified,
        "resources": inspection.resources,
        "incompleteState": incomplete,
        "conditions": merged,
        "display": {"deployed": "Yes", "monitored": "Yes", "state": state},
    });
    if let Some((id, release)) = deployed {
        status["appliedDeploymentID"] = json!(id);
        status["release"] = json!(release);
    }
    Some(json!({ "status": status }))
}

/// The status of a deploy that failed: helm's message in `Deployed` and `Ready`; `None` when
/// that is reported already (writing it again would only wake the reconciler).
pub fn failed(previous: &BundleDeploymentStatus, message: &str, now: &str) -> Option<Value> {
    let message = message.to_owned();
    let conditions = vec![
        condition(&previous.conditions, "Deployed", false, Some(&message), now),
        condition(&previous.conditions, "Ready", false, Some(&message), now),
    ];
    if conditions.iter().all(|c| previous.conditions.contains(c)) {
        return None;
    }
    let mut merged: Vec<Condition> = previous
        .conditions
        .iter()
        .filter(|c| c.type_ != "Deployed" && c.type_ != "Ready")
        .cloned()
        .chain(conditions)
        .collect();
    merged.sort_by(|a, b| a.type_.cmp(&b.type_));
    Some(json!({"status": {
        "conditions": merged,
        "display": {"deployed": format!("Error: {message}"), "state": "ErrApplied"},
    }}))
}

/// The status of a deployment that waits (for its dependencies): `Ready` False with why;
/// `None` when that is reported already.
pub fn waiting(previous: &BundleDeploymentStatus, message: &str, now: &str) -> Option<Value> {
    let message = message.to_owned();
    let ready = condition(&previous.conditions, "Ready", false, Some(&message), now);
    if previous.conditions.contains(&ready) {
        return None;
    }
    let mut merged: Vec<Condition> = previous
        .conditions
        .iter()
        .filter(|c| c.type_ != "Ready")
        .cloned()
        .chain([ready])
        .collect();
    merged.sort_by(|a, b| a.type_.cmp(&b.type_));
    Some(json!({"status": {
        "conditions": merged,
        "display": {"state": "WaitApplied"},
    }}))
}

fn sorted(conditions: &[Condition]) -> Vec<Condition> {
    let mut sorted = conditions.to_vec();
    sorted.sort_by(|a, b| a.type_.cmp(&b.type_));
    sorted
}

/// A condition; an unchanged one keeps its timestamps. A `False` `Ready` has reason
/// `NotReady`, any other `False` one `Error`.
fn condition(
    previous: &[Condition],
    type_: &str,
    ok: bool,
    message: Option<&String>,
    now: &str,
) -> Condition {
    let reason = if type_ == "Ready" {
        "NotReady"
    } else {
        "Error"
    };
    let verdict = Verdict::new(ok, reason, message.cloned());
    conditions::next(conditions::get(previous, type_), type_, verdict, now)
}

#[cfg(test)]
mod tests {
    use fleet_api::{NonReadyStatus, ResourceRef, ResourceSummary};

    use super::*;

    fn not_ready() -> Inspection {
        Inspection {
            non_ready: vec![NonReadyStatus {
                uid: None,
                resource: ResourceRef {
                    kind: Some("Deployment".to_owned()),
                    api_version: Some("apps/v1".to_owned()),
                    namespace: Some("apps".to_owned()),
                    name: Some("web".to_owned()),
                },
                summary: ResourceSummary {
                    state: Some("in-progress".to_owned()),
                    transitioning: true,
                    message: vec!["0 of 1 replicas available".to_owned()],
                    ..ResourceSummary::default()
                },
            }],
            ..Inspection::default()
        }
    }

    fn applied(patch: &Value) -> BundleDeploymentStatus {
        serde_json::from_value(patch["status"].clone()).expect("status")
    }

    #[test]
    fn a_deploy_with_a_non_ready_object_reports_why_and_then_nothing_until_it_changes() {
        let patch = observed(
            &BundleDeploymentStatus::default(),
            &not_ready(),
            Some(("s-1:o", "apps/web")),
            "t1",
        )
        .expect("first report");
        let status = applied(&patch);
        assert_eq!(status.applied_deployment_id.as_deref(), Some("s-1:o"));
        assert!(!status.ready && status.non_modified);
        let ready = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .expect("Ready");
        assert_eq!(
            ready.message.as_deref(),
            Some("deployment.apps apps/web [in-progress] 0 of 1 replicas available")
        );
        assert_eq!(status.display.state.as_deref(), Some("NotReady"));
        assert_eq!(
            observed(&status, &not_ready(), None, "t2"),
            None,
            "unchanged"
        );
        let now_ready =
            applied(&observed(&status, &Inspection::default(), None, "t3").expect("became ready"));
        assert!(now_ready.ready && now_ready.non_ready_status.is_empty());
        let deployed = now_ready.conditions.iter().find(|c| c.type_ == "Deployed");
        assert_eq!(
            deployed.and_then(|c| c.last_update_time.as_deref()),
            Some("t1")
        );
    }

    #[test]
    fn long_lists_are_cut_at_ten() {
        let mut many = not_ready();
        many.non_ready = std::iter::repeat_n(many.non_ready[0].clone(), 12).collect();
        let status = applied(
            &observed(&BundleDeploymentStatus::default(), &many, None, "t").expect("patch"),
        );
        assert_eq!(status.non_ready_status.len(), MAX_LISTED);
        assert!(status.incomplete_state);
    }

    #[test]
    fn a_failure_already_reported_is_not_written_again() {
        let patch = failed(&BundleDeploymentStatus::default(), "boom", "t1").expect("first");
        let status = applied(&patch);
        assert_eq!(failed(&status, "boom", "t2"), None);
        assert!(failed(&status, "other", "t2").is_some());
    }
}
