//! GitRepo status roll-up from the BundleDeployments of its Bundles (Fleet's gitjob status
//! reconciler): `summary`, `readyClusters`/`desiredReadyClusters`,
//! `display.readyBundleDeployments` and `display.state`. gitjob owns the other fields (commit,
//! conditions, `display.message`); both write with merge patches of their own keys only.

use std::collections::BTreeMap;
use std::sync::Arc;

use fleet_api::labels::{BUNDLE_NAMESPACE, CLUSTER, CLUSTER_NAMESPACE, REPO_NAME};
use fleet_api::{BundleState, BundleSummary, GitRepo};
use kube::ResourceExt;
use kube::runtime::controller::Action;

use crate::bundles::Error;
use crate::context::Context;
use crate::summary::{self, deployment_state};

/// Reconciles one GitRepo's roll-up.
pub async fn reconcile_gitrepo(gitrepo: Arc<GitRepo>, ctx: Arc<Context>) -> Result<Action, Error> {
    let result = apply(&gitrepo, &ctx).await;
    ctx.metrics.reconciled("gitrepo", result.is_ok());
    result
}

async fn apply(gitrepo: &GitRepo, ctx: &Context) -> Result<Action, Error> {
    let namespace = gitrepo.namespace().unwrap_or_default();
    let name = gitrepo.name_any();
    let mut summary = BundleSummary::default();
    // cluster → all of its BundleDeployments ready
    let mut clusters: BTreeMap<String, bool> = BTreeMap::new();
    for bd in ctx.caches.deployments.state() {
        let labels = bd.labels();
        if labels.get(REPO_NAME) != Some(&name) || labels.get(BUNDLE_NAMESPACE) != Some(&namespace)
        {
            continue;
        }
        let cluster = format!(
            "{}/{}",
            labels.get(CLUSTER_NAMESPACE).cloned().unwrap_or_default(),
            labels.get(CLUSTER).cloned().unwrap_or_default()
        );
        let state = deployment_state(&bd);
        summary::add_deployment(&mut summary, &format!("{cluster} {}", bd.name_any()), &bd);
        let ready = clusters.entry(cluster).or_insert(true);
        *ready &= state == BundleState::Ready;
    }
    let current = gitrepo.status.clone().unwrap_or_default();
    let ready_clusters =
        i64::try_from(clusters.values().filter(|r| **r).count()).unwrap_or(i64::MAX);
    let desired_clusters = i64::try_from(clusters.len()).unwrap_or(i64::MAX);
    let display_ready = Some(format!("{}/{}", summary.ready, summary.desired_ready));
    let state = summary::display_state(&summary).map(|s| summary::state_name(s).to_owned());
    if current.base.summary == summary
        && current.base.ready_clusters == ready_clusters
        && current.base.desired_ready_clusters == desired_clusters
        && current.base.display.ready_bundle_deployments == display_ready
        && current.base.display.state == state
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
    crate::context::apply_status::<GitRepo>(ctx, &namespace, &name, status)
        .await
        .map_err(|source| Error::Api {
            action: "writing status of GitRepo",
            what: format!("{namespace}/{name}"),
            source,
        })?;
    Ok(Action::await_change())
}
