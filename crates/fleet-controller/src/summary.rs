//! BundleDeployment states and their roll-up into summaries, as Fleet's `summary` package
//! computes them. Pure.

use fleet_api::conditions::{self, Verdict};
use fleet_api::{
    BundleState, BundleSummary, Condition, ModifiedStatus, NonReadyResource, NonReadyStatus,
};
use kube::Resource;

/// What a summary reads of a BundleDeployment, as a cache holds it (a `Deployed` or a
/// `Placement`).
pub trait Placed: Resource<DynamicType = ()> {
    /// Fleet's deployment state.
    fn state(&self) -> BundleState;
    /// Whether its agent has reported on it.
    fn reported(&self) -> bool;
    /// Why it is not ready: the message of its first failing condition.
    fn message(&self) -> Option<&str>;
    /// The agent's resources that are not ready, and those modified.
    fn not_ready(&self) -> (&[NonReadyStatus], &[ModifiedStatus]);
    /// The value of label `key`, one of those a roll-up reads (the others are not kept).
    fn label(&self, key: &str) -> Option<&str>;
}

/// At most this many non-ready BundleDeployments are listed in a summary (Fleet's limit).
pub const MAX_NON_READY: usize = 10;

/// The message of the first failing condition that has one.
pub fn failing_message(conditions: &[Condition]) -> Option<&str> {
    conditions
        .iter()
        .find(|c| c.status == "False" && c.message.as_deref().is_some_and(|m| !m.is_empty()))
        .and_then(|c| c.message.as_deref())
}

/// Adds one BundleDeployment (listed as `name`, e.g. `cluster-ns/cluster` or the bundle's
/// name) to a summary: its state, and when it is not ready, its message and the agent's
/// `nonReadyStatus` and `modifiedStatus` (as Fleet lists them).
pub fn add_deployment(summary: &mut BundleSummary, name: &str, bd: &impl Placed) {
    let state = bd.state();
    let listed = summary.non_ready_resources.len();
    add(summary, name, state, bd.message().map(str::to_owned));
    if let Some(entry) = summary.non_ready_resources.get_mut(listed) {
        let (non_ready, modified) = bd.not_ready();
        entry.non_ready_status = non_ready.to_vec();
        entry.modified_status = modified.to_vec();
    }
}

/// Adds one BundleDeployment's state (see [`add_deployment`]) to a summary.
pub fn add(summary: &mut BundleSummary, name: &str, state: BundleState, message: Option<String>) {
    summary.desired_ready += 1;
    match state {
        BundleState::Ready => summary.ready += 1,
        BundleState::NotReady => summary.not_ready += 1,
        BundleState::WaitApplied => summary.wait_applied += 1,
        BundleState::ErrApplied => summary.err_applied += 1,
        BundleState::OutOfSync => summary.out_of_sync += 1,
        BundleState::Pending => summary.pending += 1,
        BundleState::Modified => summary.modified += 1,
    }
    if state != BundleState::Ready && summary.non_ready_resources.len() < MAX_NON_READY {
        summary.non_ready_resources.push(NonReadyResource {
            name: Some(name.to_owned()),
            bundle_state: Some(state),
            message,
            ..NonReadyResource::default()
        });
    }
}

/// The highest-ranked non-ready state, as Fleet's display state (`None` when all are ready).
pub fn display_state(summary: &BundleSummary) -> Option<BundleState> {
    [
        (BundleState::ErrApplied, summary.err_applied),
        (BundleState::WaitApplied, summary.wait_applied),
        (BundleState::Modified, summary.modified),
        (BundleState::OutOfSync, summary.out_of_sync),
        (BundleState::Pending, summary.pending),
        (BundleState::NotReady, summary.not_ready),
    ]
    .into_iter()
    .filter(|(_, count)| *count > 0)
    .map(|(state, _)| state)
    .max_by_key(|state| state.rank())
}

/// The `Ready` condition for a summary, Fleet's message style: `WaitApplied(1) [Cluster
/// fleet-default/c1]`, with each listed deployment's own message after a colon. `kind` names the listed objects (`Cluster`, `Bundle`).
pub fn ready_condition(
    summary: &BundleSummary,
    kind: &str,
    now: &str,
    previous: Option<&Condition>,
) -> Condition {
    let message = display_state(summary).map(|state| {
        let listed: Vec<String> = summary
            .non_ready_resources
            .iter()
            .filter(|r| r.bundle_state == Some(state))
            .filter_map(|r| {
                let name = r.name.as_ref()?;
                Some(match r.message.as_deref().filter(|m| !m.is_empty()) {
                    Some(message) => format!("{kind} {name}: {message}"),
                    None => format!("{kind} {name}"),
                })
            })
            .collect();
        let count = match state {
            BundleState::ErrApplied => summary.err_applied,
            BundleState::WaitApplied => summary.wait_applied,
            BundleState::Modified => summary.modified,
            BundleState::OutOfSync => summary.out_of_sync,
            BundleState::Pending => summary.pending,
            _ => summary.not_ready,
        };
        format!("{}({count}) [{}]", state_name(state), listed.join("; "))
    });
    not_ready("Ready", message.is_none(), message, now, previous)
}

/// A roll-up's condition: `False` with reason `NotReady` and `message` unless `ok`.
pub fn not_ready(
    type_: &str,
    ok: bool,
    message: Option<String>,
    now: &str,
    previous: Option<&Condition>,
) -> Condition {
    conditions::next(previous, type_, Verdict::new(ok, "NotReady", message), now)
}

/// A state's name as Fleet prints it.
pub fn state_name(state: BundleState) -> &'static str {
    match state {
        BundleState::Ready => "Ready",
        BundleState::NotReady => "NotReady",
        BundleState::WaitApplied => "WaitApplied",
        BundleState::ErrApplied => "ErrApplied",
        BundleState::OutOfSync => "OutOfSync",
        BundleState::Pending => "Pending",
        BundleState::Modified => "Modified",
    }
}

#[cfg(test)]
mod tests {
    use fleet_api::{BundleDeployment, BundleDeploymentSpec, BundleDeploymentStatus};

    use super::*;

    fn bd(
        id: &str,
        staged: &str,
        applied: Option<&str>,
        ready: bool,
        non_modified: bool,
    ) -> BundleDeployment {
        let mut bd = BundleDeployment::new(
            "b",
            BundleDeploymentSpec {
                deployment_id: Some(id.to_owned()),
                staged_deployment_id: Some(staged.to_owned()),
                ..BundleDeploymentSpec::default()
            },
        );
        bd.status = Some(BundleDeploymentStatus {
            applied_deployment_id: applied.map(str::to_owned),
            ready,
            non_modified,
            ..BundleDeploymentStatus::default()
        });
        bd
    }

    fn deployment_state(bd: &BundleDeployment) -> BundleState {
        bd.state()
    }

    #[test]
    fn states_are_checked_in_fleets_order() {
        assert_eq!(
            deployment_state(&bd("a", "a", None, false, false)),
            BundleState::WaitApplied
        );
        let mut failed = bd("a", "a", Some("old"), false, false);
        if let Some(status) = failed.status.as_mut() {
            status.conditions.push(Condition {
                type_: "Deployed".to_owned(),
                status: "False".to_owned(),
                message: Some("helm: boom".to_owned()),
                ..Condition::default()
            });
        }
        assert_eq!(deployment_state(&failed), BundleState::ErrApplied);
        let conditions = failed.status.as_ref().map(|s| s.conditions.as_slice());
        assert_eq!(conditions.and_then(failing_message), Some("helm: boom"));
        assert_eq!(
            deployment_state(&bd("a", "a", Some("a"), false, true)),
            BundleState::NotReady
        );
        assert_eq!(
            deployment_state(&bd("a", "b", Some("a"), true, true)),
            BundleState::OutOfSync
        );
        assert_eq!(
            deployment_state(&bd("a", "a", Some("a"), true, false)),
            BundleState::Modified
        );
        assert_eq!(
            deployment_state(&bd("a", "a", Some("a"), true, true)),
            BundleState::Ready
        );
    }

    #[test]
    fn summaries_count_and_name_the_worst_state() {
        let mut summary = BundleSummary::default();
        add(&mut summary, "fleet-default/c1", BundleState::Ready, None);
        add(
            &mut summary,
            "fleet-default/c2",
            BundleState::WaitApplied,
            None,
        );
        add(
            &mut summary,
            "fleet-default/c3",
            BundleState::NotReady,
            None,
        );
        assert_eq!((summary.desired_ready, summary.ready), (3, 1));
        assert_eq!(display_state(&summary), Some(BundleState::WaitApplied));
        let ready = ready_condition(&summary, "Cluster", "t", None);
        assert_eq!(ready.status, "False");
        assert_eq!(
            ready.message.as_deref(),
            Some("WaitApplied(1) [Cluster fleet-default/c2]")
        );
        let again = ready_condition(&summary, "Cluster", "t2", Some(&ready));
        assert_eq!(again, ready, "an unchanged summary keeps its timestamps");
        assert_eq!(
            ready_condition(&BundleSummary::default(), "Cluster", "t", None).status,
            "True"
        );
    }
}
