//! GitRepo and HelmOp status roll-ups from the BundleDeployments of their Bundles (Fleet's
//! gitjob and helmops status reconcilers): `summary`, `readyClusters`/`desiredReadyClusters`,
//! `display.readyBundleDeployments` and `display.state`, and a GitRepo's `Ready` condition
//! (as Fleet's status reconciler: from its Bundles and their deployments). gitjob and helmops
//! own the other fields (commit or version, the other conditions, `display.message`); each
//! writer writes its own keys only (conditions are a list map keyed by type).

use std::collections::BTreeMap;
use std::sync::Arc;

use fleet_api::conditions;
use fleet_api::labels::conditions::{READY, STALLED};
use fleet_api::labels::{BUNDLE_NAMESPACE, CLUSTER, CLUSTER_NAMESPACE, HELM_OP_NAME, REPO_NAME};
use fleet_api::{Bundle, BundleState, BundleSummary, GitRepo, HelmOp, StatusBase};
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;

use crate::context::{Context, retry};
use crate::error::Error;
use crate::summary;
use crate::wiring::{Term, label_ref};

/// Reconciles one GitRepo's roll-up (its Bundles carry `fleet.cattle.io/repo-name`).
pub async fn reconcile_gitrepo(gitrepo: Arc<GitRepo>, ctx: Arc<Context>) -> Result<Action, Error> {
    let status = gitrepo.status.clone().unwrap_or_default();
    let namespace = gitrepo.namespace().unwrap_or_default();
    let name = gitrepo.name_any();
    let mut bundles: Vec<Arc<Bundle>> = ctx
        .caches
        .bundles
        .state()
        .into_iter()
        .filter(|b| {
            b.namespace().as_deref() == Some(namespace.as_str())
                && b.labels().get(REPO_NAME) == Some(&name)
        })
        .collect();
    bundles.sort_by_key(|b| b.name_any());
    let sync = SyncState {
        synced: status.commit.is_some(),
        stalled: conditions::get(&status.base.conditions, STALLED)
            .filter(|c| c.status == "True")
            .map(|c| c.message.clone().unwrap_or_default()),
    };
    let bundle_ready: Vec<(String, Option<String>)> = bundles
        .iter()
        .filter_map(|b| {
            let ready = conditions::get(&b.status.as_ref()?.conditions, READY)?;
            (ready.status == "False").then(|| (b.name_any(), ready.message.clone()))
        })
        .collect();
    let ready = Ready::GitRepo {
        sync,
        bundles: bundle_ready,
    };
    let result = apply(gitrepo.as_ref(), REPO_NAME, &status.base, ready, &ctx).await;
    ctx.metrics.reconciled("gitrepo", result.is_ok());
    result
}

/// Reconciles one HelmOp's roll-up (its Bundles carry `fleet.cattle.io/fleet-helm-name`).
pub async fn reconcile_helmop(helmop: Arc<HelmOp>, ctx: Arc<Context>) -> Result<Action, Error> {
    let current = helmop.status.clone().unwrap_or_default().base;
    let result = apply(
        helmop.as_ref(),
        HELM_OP_NAME,
        &current,
        Ready::Unowned,
        &ctx,
    )
    .await;
    ctx.metrics.reconciled("helmop", result.is_ok());
    result
}

/// Rolls up the BundleDeployments labelled `label=<name>` of `owner`'s namespace into its
/// status; writes when that changed.
async fn apply<K>(
    owner: &K,
    label: &str,
    current: &StatusBase,
    ready: Ready,
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
        if bd.label(label) != Some(name.as_str())
            || bd.label(BUNDLE_NAMESPACE) != Some(namespace.as_str())
        {
            continue;
        }
        let cluster = format!(
            "{}/{}",
            bd.label(CLUSTER_NAMESPACE).unwrap_or_default(),
            bd.label(CLUSTER).unwrap_or_default()
        );
        let state = bd.state();
        summary::add_deployment(
            &mut summary,
            &format!("{cluster} {}", bd.name_any()),
            bd.as_ref(),
        );
        let ready = clusters.entry(cluster).or_insert(true);
        *ready &= state == BundleState::Ready;
    }
    let ready_clusters =
        i64::try_from(clusters.values().filter(|r| **r).count()).unwrap_or(i64::MAX);
    let desired_clusters = i64::try_from(clusters.len()).unwrap_or(i64::MAX);
    let display_ready = Some(format!("{}/{}", summary.ready, summary.desired_ready));
    let state = summary::display_state(&summary).map(|s| summary::state_name(s).to_owned());
    let previous = conditions::get(&current.conditions, READY);
    let ready = ready
        .verdict(&summary)
        .map(|message| summary::not_ready(READY, message.is_none(), message, &now(), previous));
    if current.summary == summary
        && ready.as_ref().is_none_or(|r| Some(r) == previous)
        && current.ready_clusters == ready_clusters
        && current.desired_ready_clusters == desired_clusters
        && current.display.ready_bundle_deployments == display_ready
        && current.display.state == state
    {
        return Ok(Action::await_change());
    }
    ctx.check_leading()?;
    let mut status = serde_json::json!({
        "summary": summary,
        "readyClusters": ready_clusters,
        "desiredReadyClusters": desired_clusters,
        "display": {"readyBundleDeployments": display_ready, "state": state},
    });
    if let Some(ready) = ready {
        status["conditions"] = serde_json::json!([ready]);
    }
    crate::context::apply_status::<K>(ctx, &namespace, &name, status).await?;
    Ok(Action::await_change())
}

fn now() -> String {
    jiff::Timestamp::now().to_string()
}

/// What gitjob's own conditions say about the last sync.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncState {
    /// Some commit's Bundles were written (`status.commit` is set).
    pub synced: bool,
    /// `Stalled=True`: the last sync failed, with gitjob's message.
    pub stalled: Option<String>,
}

/// Who decides an owner's `Ready` condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ready {
    /// Not the roll-up (a HelmOp's is helmops').
    Unowned,
    /// A GitRepo's, from gitjob's sync and its Bundles' `Ready=False` conditions (name,
    /// message), sorted by Bundle name.
    GitRepo {
        sync: SyncState,
        bundles: Vec<(String, Option<String>)>,
    },
}

impl Ready {
    /// `None`: not the roll-up's to write; `Some(None)`: Ready; `Some(Some(message))`: not
    /// Ready, saying why. As Fleet's GitRepo status reconciler, a Bundle that is not Ready
    /// (one that cannot be targeted has no deployments to say so) decides before the summary
    /// of the deployments; beyond Fleet, a GitRepo is not Ready before its first sync or while
    /// its last sync failed (Fleet reports those in `Stalled` only, and `Ready` 0/0).
    pub fn verdict(&self, summary: &BundleSummary) -> Option<Option<String>> {
        let Self::GitRepo { sync, bundles } = self else {
            return None;
        };
        if let Some(message) = &sync.stalled {
            return Some(Some(message.clone()));
        }
        if !sync.synced {
            return Some(Some(
                "waiting for the first sync of the repository".to_owned(),
            ));
        }
        if let Some((name, message)) = bundles.first() {
            let message = message.as_deref().filter(|m| !m.is_empty());
            return Some(Some(match message {
                Some(message) => format!("Bundle {name}: {message}"),
                None => format!("Bundle {name} is not ready"),
            }));
        }
        Some(summary::ready_condition(summary, "Bundle", "", None).message)
    }
}

/// The GitRepo and HelmOp roll-ups of a term: on their BundleDeployments' changes
/// (debounced), and a GitRepo's also on its Bundles' (a Bundle's Ready condition decides
/// its GitRepo's: one that cannot be targeted has no BundleDeployments to say so).
pub async fn run(term: &Term) {
    let caches = &term.caches;
    let workers = term.ctx.settings.workers.rollups;
    let gitrepos = term
        .controller(&caches.gitrepos)
        .await
        .watches_shared_stream(caches.deployments.changes().await, |bd| {
            label_ref::<GitRepo>(bd.as_ref(), REPO_NAME, BUNDLE_NAMESPACE)
        })
        .watches_shared_stream(caches.bundles.changes().await, |bundle| {
            Some(
                ObjectRef::<GitRepo>::new(bundle.labels().get(REPO_NAME)?)
                    .within(&bundle.namespace()?),
            )
        });
    let helmops = term
        .controller(&caches.helmops)
        .await
        .watches_shared_stream(caches.deployments.changes().await, |bd| {
            label_ref::<HelmOp>(bd.as_ref(), HELM_OP_NAME, BUNDLE_NAMESPACE)
        });
    futures::join!(
        term.run(
            gitrepos,
            term.rollup(workers),
            "gitrepo-status",
            reconcile_gitrepo,
            retry
        ),
        term.run(
            helmops,
            term.rollup(workers),
            "helmop-status",
            reconcile_helmop,
            retry
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gitrepo(synced: bool, stalled: Option<&str>, bundles: &[(&str, Option<&str>)]) -> Ready {
        Ready::GitRepo {
            sync: SyncState {
                synced,
                stalled: stalled.map(str::to_owned),
            },
            bundles: bundles
                .iter()
                .map(|(n, m)| ((*n).to_owned(), m.map(str::to_owned)))
                .collect(),
        }
    }

    #[test]
    fn a_gitrepo_is_ready_only_when_synced_and_every_bundle_is() {
        let mut waiting = BundleSummary::default();
        summary::add(
            &mut waiting,
            "fleet-default/c1 app",
            BundleState::WaitApplied,
            None,
        );
        let ready = BundleSummary {
            desired_ready: 1,
            ready: 1,
            ..BundleSummary::default()
        };
        let none = BundleSummary::default();
        let cases: [(&str, Ready, &BundleSummary, Option<Option<&str>>); 8] = [
            ("a HelmOp's Ready is helmops'", Ready::Unowned, &ready, None),
            (
                "synced, deployed",
                gitrepo(true, None, &[]),
                &ready,
                Some(None),
            ),
            (
                "synced, nothing targeted",
                gitrepo(true, None, &[]),
                &none,
                Some(None),
            ),
            (
                "before the first sync",
                gitrepo(false, None, &[]),
                &none,
                Some(Some("waiting for the first sync of the repository")),
            ),
            (
                "the last sync failed",
                gitrepo(true, Some("fleet.yaml: bad"), &[("a", Some("x"))]),
                &ready,
                Some(Some("fleet.yaml: bad")),
            ),
            (
                "a bundle cannot be targeted",
                gitrepo(true, None, &[("a", Some("invalid label key \"-env\""))]),
                &none,
                Some(Some("Bundle a: invalid label key \"-env\"")),
            ),
            (
                "a bundle not ready without a message",
                gitrepo(true, None, &[("a", None)]),
                &none,
                Some(Some("Bundle a is not ready")),
            ),
            (
                "deployments waiting",
                gitrepo(true, None, &[]),
                &waiting,
                Some(Some("WaitApplied(1) [Bundle fleet-default/c1 app]")),
            ),
        ];
        for (case, ready, summary, expected) in cases {
            let verdict = ready.verdict(summary);
            assert_eq!(verdict.as_ref().map(|v| v.as_deref()), expected, "{case}");
        }
    }
}
