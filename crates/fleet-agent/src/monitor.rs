//! The monitoring role's BundleDeployment reconciler: the periodic look at every deployed
//! release (readiness and drift of its objects downstream, [`crate::inspect`]) and the status
//! it gives (`ready`, `nonReadyStatus`, `modifiedStatus`, `resources`, the `Ready` and
//! `Monitored` conditions).
//!
//! It runs under a Lease of its own (`<lease>-monitor`), so with two agent replicas one
//! deploys while the other monitors, and the deploying replica spends nothing on these reads;
//! a replica alone holds both Leases. It never runs helm except `helm get manifest`: drift it
//! reports is corrected by the deploying role (the `deploy` module), woken by the status
//! written here.

use std::sync::Arc;
use std::time::Duration;

use fleet_api::BundleDeployment;
use fleet_runtime::Writer;
use kube::runtime::controller::Action;
use kube::{Client, ResourceExt};

use crate::Error;
use crate::inspect::{Inspection, Inspector};
use crate::report::{self, Freshness};

/// What the monitoring reconciler needs.
pub struct Context {
    pub upstream: Client,
    pub inspector: Inspector,
    /// The writes of this term of the monitoring Lease: each goes out only while it is held.
    pub writer: Writer,
    /// How often each deployed release is looked at.
    pub drift_interval: Duration,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("writer", &self.writer)
            .finish_non_exhaustive()
    }
}

/// Objects that are not ready yet are looked at again at least this often, so that readiness
/// shows soon after it changes.
const NOT_READY_RECHECK: Duration = Duration::from_secs(5);

/// What the monitoring role does with a BundleDeployment as it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Nothing to look at (not deployed yet, paused, being deleted): the deploying role acts,
    /// and its status write wakes this reconciler again.
    Wait,
    /// Look at the release of this deployment.
    Inspect { deployment_id: String },
}

/// Decides, from the BundleDeployment alone.
pub fn plan(bd: &BundleDeployment) -> Plan {
    let wanted = bd.spec.deployment_id.as_deref().filter(|id| !id.is_empty());
    let applied = bd
        .status
        .as_ref()
        .and_then(|s| s.applied_deployment_id.as_deref());
    match wanted {
        Some(id)
            if applied == Some(id)
                && !bd.spec.paused
                && bd.metadata.deletion_timestamp.is_none() =>
        {
            Plan::Inspect {
                deployment_id: id.to_owned(),
            }
        }
        _ => Plan::Wait,
    }
}

pub async fn reconcile(bd: Arc<BundleDeployment>, ctx: Arc<Context>) -> Result<Action, Error> {
    let Plan::Inspect { deployment_id } = plan(&bd) else {
        return Ok(Action::await_change());
    };
    let name = bd.name_any();
    let inspection = match ctx.inspector.inspect(&bd, &deployment_id).await {
        Ok(inspection) => inspection,
        Err(message) => {
            tracing::warn!(bundle_deployment = %name, error = %message, "cannot inspect the release; retrying");
            return Ok(Action::requeue(ctx.drift_interval));
        }
    };
    let status = bd.status.clone().unwrap_or_default();
    let now = jiff::Timestamp::now().to_string();
    if let Some(patch) = crate::status::observed(&status, &inspection, None, &now) {
        tracing::debug!(bundle_deployment = %name, ready = inspection.non_ready.is_empty(), modified = inspection.modified.len(), "status changed");
        report::status(
            &ctx.upstream,
            &ctx.writer,
            &bd,
            patch,
            Freshness::IfUnchanged,
        )
        .await?;
    }
    Ok(Action::requeue(next_check(&inspection, ctx.drift_interval)))
}

fn next_check(inspection: &Inspection, drift_interval: Duration) -> Duration {
    if inspection.non_ready.is_empty() {
        drift_interval
    } else {
        drift_interval.min(NOT_READY_RECHECK)
    }
}

pub fn error_policy(bd: Arc<BundleDeployment>, error: &Error, _ctx: Arc<Context>) -> Action {
    match error {
        Error::Write(error) if error.is_conflict() => {
            tracing::debug!(bundle_deployment = %bd.name_any(), "status changed while looking; looking again");
            Action::requeue(Duration::from_millis(200))
        }
        _ => {
            tracing::warn!(bundle_deployment = %bd.name_any(), %error, "monitoring failed; retrying");
            Action::requeue(Duration::from_secs(5))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleet_api::BundleDeploymentStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn bd(wanted: Option<&str>, applied: Option<&str>) -> BundleDeployment {
        let mut bd = BundleDeployment::new("bd", Default::default());
        bd.spec.deployment_id = wanted.map(str::to_owned);
        bd.status = Some(BundleDeploymentStatus {
            applied_deployment_id: applied.map(str::to_owned),
            ..BundleDeploymentStatus::default()
        });
        bd
    }

    #[test]
    fn only_a_deployed_current_release_is_inspected() {
        let inspect = Plan::Inspect {
            deployment_id: "s-1:abc".to_owned(),
        };
        let mut paused = bd(Some("s-1:abc"), Some("s-1:abc"));
        paused.spec.paused = true;
        let mut deleting = bd(Some("s-1:abc"), Some("s-1:abc"));
        deleting.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::now()));
        let cases = [
            (bd(Some("s-1:abc"), Some("s-1:abc")), inspect),
            (bd(Some("s-1:new"), Some("s-1:abc")), Plan::Wait),
            (bd(Some("s-1:abc"), None), Plan::Wait),
            (bd(None, None), Plan::Wait),
            (bd(Some(""), Some("")), Plan::Wait),
            (paused, Plan::Wait),
            (deleting, Plan::Wait),
        ];
        for (bd, expected) in cases {
            assert_eq!(plan(&bd), expected, "{:?}", bd.spec.deployment_id);
        }
    }
}
