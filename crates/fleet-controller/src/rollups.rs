//! GitRepo and HelmOp status roll-ups from the BundleDeployments of their Bundles (Fleet's
//! gitjob and helmops status reconcilers): `summary`, `readyClusters`/`desiredReadyClusters`,
//! `display.readyBundleDeployments` and `display.state`. gitjob and helmops own the other
//! fields (commit or version, conditions, `display.message`); each writer writes its own keys
//! only.

use std::collections::BTreeMap;
use std::sync::Arc;

use fleet_api::labels::{BUNDLE_NAMESPACE, CLUSTER, CLUSTER_NAMESPACE, HELM_OP_NAME, REPO_NAME};
use fleet_api::{BundleState, BundleSummary, GitRepo, HelmOp, StatusBase};
use kube::ResourceExt;
use kube::runtime::controller::Action;

use crate::bundles::Error;
use crate::context::Context;
use crate::summary;

/// Reconciles one GitRepo's roll-up (its Bundles carry `fleet.cattle.io/repo-name`).
pub async fn reconcile_gitrepo(gitrepo: Arc<GitRepo>, ctx: Arc<Context>) -> Result<Action, Error> {
    let current = gitrepo.status.clone().unwrap_or_default().base;
    let result = apply(gitrepo.as_ref(), REPO_NAME, &current, &ctx).await;
    ctx.metrics.reconciled("gitrepo", result.is_ok());
    result
}

/// Reconciles one HelmOp's roll-up (its Bundles carry `fleet.cattle.io/fleet-helm-name`).
pub async fn reconcile_helmop(helmop: Arc<HelmOp>, ctx: Arc<Context>) -> Result<Action, Error> {
    let current = helmop.status.clone().unwrap_or_default().base;
    let result = apply(helmop.as_ref(), HELM_OP_NAME, &current, &ctx).await;
    ctx.metrics.reconciled("helmop", result.is_ok());
    result
}

/// Rolls up the BundleDeployments labelled `label=<name>` of `owner`'s namespace into its
/// status; writes when that changed.
async fn apply<K>(
    owner: &K,
    label: &str,
    current: &StatusBase,
    ctx: &Context,
) -> Result<Action, Error>
where
    K: kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let namespace = owner.namespace().unwrap_or_default();
    let name = owner.name_any();
    let mut summary = BundleSummary::default();
    // cluster → all of its BundleDeployments ready
    let mut clusters: BTreeMap<String, bool> = BTreeMap::new();
    for bd in ctx.caches.deployments.state() {
        let labels = bd.labels();
        if labels.get(label) != Some(&name) || labels.get(BUNDLE_NAMESPACE) != Some(&namespace) {
            continue;
        }
        let cluster = format!(
            "{}/{}",
            labels.get(CLUSTER_NAMESPACE).cloned().unwrap_or_default(),
            labels.get(CLUSTER).cloned().unwrap_or_default()
        );
        let state = bd.state();
        summary::add_deployment(&mut summary, &format!("{cluster} {}", bd.name_any()), &bd);
        let ready = clusters.entry(cluster).or_insert(true);
        *ready &= state == BundleState::Ready;
    }
    let ready_clusters =
        i64::try_from(clusters.values().filter(|r| **r).count()).unwrap_or(i64::MAX);
    let desired_clusters = i64::try_from(clusters.len()).unwrap_or(i64::MAX);
    let display_ready = Some(format!("{}/{}", summary.ready, summary.desired_ready));
    let state = summary::display_state(&summary).map(|s| summary::state_name(s).to_owned());
    if current.summary == summary
        && current.ready_clusters == ready_clusters
        && current.desired_ready_clusters == desired_clusters
        && current.display.ready_bundle_deployments == display_ready
        && current.display.state == state
    {
        return Ok(Action::await_change());
    }
    ctx.check_leading()?;
    let status = serde_json::json!({
        "summary": summary,
        "readyClusters": ready_clusters,
        "desiredReadyClusters": desired_clusters,
        "display": {"readyBundleDeployments": display_ready, "state": state},
    });
    crate::context::apply_status::<K>(ctx, &namespace, &name, status).await?;
    Ok(Action::await_change())
}
