//! Clusters and ClusterGroups: each Cluster gets its namespace for BundleDeployments
//! (`status.namespace`, labelled `fleet.cattle.io/managed=true`) and a status rolled up from
//! them; beyond Fleet, a Cluster whose agent has not checked in within `--agent-timeout` is
//! not Ready, with a message saying since when. Each ClusterGroup counts its clusters, the
//! non-ready ones and their bundles. Status is written only when it changed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use fleet_api::labels::{BUNDLE_NAMESPACE, CLUSTER, CLUSTER_NAMESPACE, HELM_OP_NAME, REPO_NAME};
use fleet_api::{
    BundleState, BundleSummary, Cluster, ClusterDisplay, ClusterGroup, ClusterGroupDisplay,
    ClusterGroupStatus, ClusterStatus,
};
use fleet_render::target::selector_matches;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;

use crate::context::{Context, deployment_namespace, retry};
use crate::error::Error;
use crate::placements::Placement;
use crate::summary;
use crate::summary::Placed;
use crate::wiring::{Term, in_namespace, label_ref};

/// Reconciles one Cluster.
pub async fn reconcile_cluster(cluster: Arc<Cluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let result = apply_cluster(&cluster, &ctx).await;
    ctx.metrics.reconciled("cluster", result.is_ok());
    result
}

async fn apply_cluster(cluster: &Cluster, ctx: &Context) -> Result<Action, Error> {
    if cluster.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let namespace = cluster.namespace().unwrap_or_default();
    let name = cluster.name_any();
    let bd_namespace = deployment_namespace(cluster);
    let current = cluster.status.clone().unwrap_or_default();
    if current.namespace.as_deref() != Some(bd_namespace.as_str()) {
        crate::namespaces::ensure(ctx, &bd_namespace, cluster).await?;
    } else if let Some(wait) = ctx
        .memory
        .bursts
        .defer(&format!("{namespace}/{name}"), tokio::time::Instant::now())
    {
        // Its namespace is written; its counts wait for the fan-out to end.
        return Ok(Action::requeue(wait));
    }
    let deployments = ctx.caches.placed.in_namespace(&bd_namespace);
    let now = jiff::Timestamp::now();
    let (next, recheck) = cluster_status(cluster, &deployments, ctx.settings.agent_timeout, now);
    let last_seen = current
        .agent
        .last_seen
        .as_deref()
        .and_then(|t| t.parse().ok());
    ctx.metrics
        .cluster_observed(&namespace, &name, last_seen, &next.summary);
    if next != current {
        ctx.check_leading()?;
        let status = cluster_patch(&next);
        crate::context::apply_status::<Cluster>(ctx, &namespace, &name, status).await?;
    }
    Ok(recheck.map_or_else(Action::await_change, Action::requeue))
}

/// A Cluster's status from its BundleDeployments (`deployments`, those in its namespace) and
/// its agent's last check-in, at `now`; and when to look again (when the agent would become
/// late).
pub fn cluster_status(
    cluster: &Cluster,
    deployments: &[Arc<Placement>],
    agent_timeout: Duration,
    now: jiff::Timestamp,
) -> (ClusterStatus, Option<Duration>) {
    let current = cluster.status.clone().unwrap_or_default();
    let mut summary = BundleSummary::default();
    // GitRepo / HelmOp (namespace, name) → any of its BundleDeployments here is Ready
    // (Fleet's OR: a repo counts as ready on a cluster when one of its bundles is).
    let mut git_repos: BTreeMap<(String, String), bool> = BTreeMap::new();
    let mut helm_ops: BTreeMap<(String, String), bool> = BTreeMap::new();
    for bd in deployments {
        summary::add_deployment(&mut summary, &bd.name_any(), bd.as_ref());
        let ready = bd.state() == BundleState::Ready;
        let bundle_namespace = bd.label(BUNDLE_NAMESPACE).unwrap_or_default();
        for (label, owners) in [(REPO_NAME, &mut git_repos), (HELM_OP_NAME, &mut helm_ops)] {
            if let Some(owner) = bd.label(label) {
                *owners
                    .entry((bundle_namespace.to_owned(), owner.to_owned()))
                    .or_insert(false) |= ready;
            }
        }
    }
    let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    let ready_count = |owners: &BTreeMap<(String, String), bool>| {
        count(owners.values().filter(|ready| **ready).count())
    };
    let previous = current.conditions.iter().find(|c| c.type_ == "Ready");
    let (agent_ok, agent_message, recheck) = agent_freshness(cluster, agent_timeout, now);
    let now = now.to_string();
    let ready = if agent_ok {
        summary::ready_condition(&summary, "Bundle", &now, previous)
    } else {
        summary::not_ready("Ready", false, agent_message, &now, previous)
    };
    let next = ClusterStatus {
        namespace: Some(deployment_namespace(cluster)),
        display: ClusterDisplay {
            ready_bundles: Some(format!("{}/{}", summary.ready, summary.desired_ready)),
            state: summary::display_state(&summary).map(|s| summary::state_name(s).to_owned()),
        },
        summary,
        // Ready is this roll-up's; other conditions (the import's) belong to other writers.
        conditions: std::iter::once(ready)
            .chain(
                current
                    .conditions
                    .iter()
                    .filter(|c| c.type_ != "Ready")
                    .cloned(),
            )
            .collect(),
        ready_git_repos: ready_count(&git_repos),
        desired_ready_git_repos: count(git_repos.len()),
        ready_helm_ops: ready_count(&helm_ops),
        desired_ready_helm_ops: count(helm_ops.len()),
        ..current
    };
    (next, recheck)
}

/// The fields of a Cluster's status the roll-up applies (its own: the import writes others).
fn cluster_patch(status: &ClusterStatus) -> serde_json::Value {
    let ready: Vec<_> = status
        .conditions
        .iter()
        .filter(|c| c.type_ == "Ready")
        .collect();
    serde_json::json!({
        "namespace": status.namespace,
        "display": status.display,
        "summary": status.summary,
        "conditions": ready,
        "readyGitRepos": status.ready_git_repos,
        "desiredReadyGitRepos": status.desired_ready_git_repos,
        "readyHelmOps": status.ready_helm_ops,
        "desiredReadyHelmOps": status.desired_ready_helm_ops,
    })
}

/// Whether the agent checked in recently; the message when not; when to look again.
fn agent_freshness(
    cluster: &Cluster,
    timeout: Duration,
    now: jiff::Timestamp,
) -> (bool, Option<String>, Option<Duration>) {
    let last_seen = cluster
        .status
        .as_ref()
        .and_then(|s| s.agent.last_seen.as_deref())
        .and_then(|t| t.parse::<jiff::Timestamp>().ok());
    let Some(last_seen) = last_seen else {
        return (
            false,
            Some("waiting for the agent to register and check in".to_owned()),
            None,
        );
    };
    let age = now.duration_since(last_seen);
    let timeout_signed =
        jiff::SignedDuration::try_from(timeout).unwrap_or(jiff::SignedDuration::MAX);
    if age > timeout_signed {
        let message = format!(
            "agent has not checked in since {last_seen} ({}s ago; --agent-timeout is {}s)",
            age.as_secs(),
            timeout.as_secs()
        );
        (false, Some(message), None)
    } else {
        let left = Duration::try_from(timeout_signed - age).unwrap_or_default();
        (true, None, Some(left + Duration::from_secs(1)))
    }
}

/// Reconciles one ClusterGroup.
pub async fn reconcile_group(group: Arc<ClusterGroup>, ctx: Arc<Context>) -> Result<Action, Error> {
    let result = apply_group(&group, &ctx).await;
    ctx.metrics.reconciled("clustergroup", result.is_ok());
    result
}

async fn apply_group(group: &ClusterGroup, ctx: &Context) -> Result<Action, Error> {
    let namespace = group.namespace().unwrap_or_default();
    let name = group.name_any();
    let current = group.status.clone().unwrap_or_default();
    let clusters: Vec<Arc<Cluster>> = ctx
        .caches
        .clusters
        .state()
        .into_iter()
        .filter(|c| c.namespace().as_deref() == Some(namespace.as_str()))
        .collect();
    let next = group_status(group, &clusters, &jiff::Timestamp::now().to_string());
    if next != current {
        ctx.check_leading()?;
        let status = serde_json::json!({
            "clusterCount": next.cluster_count,
            "nonReadyClusterCount": next.non_ready_cluster_count,
            "nonReadyClusters": next.non_ready_clusters,
            "display": next.display,
            "summary": next.summary,
            "conditions": next.conditions,
        });
        crate::context::apply_status::<ClusterGroup>(ctx, &namespace, &name, status).await?;
    }
    Ok(Action::await_change())
}

/// A ClusterGroup's status from the Clusters of its namespace (`clusters`): those its
/// selector selects, their readiness and their bundles.
pub fn group_status(
    group: &ClusterGroup,
    clusters: &[Arc<Cluster>],
    now: &str,
) -> ClusterGroupStatus {
    let current = group.status.clone().unwrap_or_default();
    // A selector that cannot be parsed selects nothing, and says so in Ready (not a silent
    // "0 clusters, Ready").
    let invalid = group.spec.selector.as_ref().and_then(|s| {
        selector_matches(s, &BTreeMap::new())
            .err()
            .map(|e| format!("invalid spec.selector: {e}"))
    });
    let clusters: Vec<&Arc<Cluster>> = clusters
        .iter()
        .filter(|c| {
            invalid.is_none()
                && group
                    .spec
                    .selector
                    .as_ref()
                    .is_some_and(|s| selector_matches(s, c.labels()).unwrap_or(false))
        })
        .collect();
    let mut summary = BundleSummary::default();
    let mut non_ready = Vec::new();
    for cluster in &clusters {
        let status = cluster.status.clone().unwrap_or_default();
        let ready = status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        if !ready {
            non_ready.push(cluster.name_any());
        }
        let s = &status.summary;
        summary.desired_ready += s.desired_ready;
        summary.ready += s.ready;
        summary.not_ready += s.not_ready;
        summary.wait_applied += s.wait_applied;
        summary.err_applied += s.err_applied;
        summary.out_of_sync += s.out_of_sync;
        summary.modified += s.modified;
        summary.pending += s.pending;
    }
    non_ready.sort();
    let count = i64::try_from(clusters.len()).unwrap_or(i64::MAX);
    let non_ready_count = i64::try_from(non_ready.len()).unwrap_or(i64::MAX);
    let previous = current.conditions.iter().find(|c| c.type_ == "Ready");
    let message = (!non_ready.is_empty()).then(|| {
        format!(
            "NotReady({non_ready_count}) [Cluster {}]",
            non_ready.join(", ")
        )
    });
    let ready = match &invalid {
        Some(error) => summary::not_ready("Ready", false, Some(error.clone()), now, previous),
        None => summary::not_ready("Ready", non_ready.is_empty(), message, now, previous),
    };
    ClusterGroupStatus {
        cluster_count: count,
        non_ready_cluster_count: non_ready_count,
        non_ready_clusters: non_ready.into_iter().take(summary::MAX_NON_READY).collect(),
        display: ClusterGroupDisplay {
            ready_clusters: Some(format!("{}/{count}", count - non_ready_count)),
            ready_bundles: Some(format!("{}/{}", summary.ready, summary.desired_ready)),
            state: summary::display_state(&summary).map(|s| summary::state_name(s).to_owned()),
        },
        summary,
        conditions: vec![ready],
        ..current
    }
}

/// The Cluster a changed BundleDeployment is placed on (whose roll-up looks again), noting
/// creations for [`crate::bursts`].
fn placed_on<P: Placed + Send + Sync + 'static>(
    ctx: Arc<Context>,
) -> impl Fn(Arc<P>) -> Option<ObjectRef<Cluster>> {
    move |bd| {
        ctx.memory
            .bursts
            .observe(bd.as_ref(), tokio::time::Instant::now());
        label_ref::<Cluster>(bd.as_ref(), CLUSTER, CLUSTER_NAMESPACE)
    }
}

/// The Cluster and ClusterGroup roll-ups of a term (the unsharded controller's): a Cluster on
/// its BundleDeployments' changes, a ClusterGroup on its namespace's Clusters' (debounced).
pub async fn run(term: &Term) {
    let caches = &term.caches;
    let workers = term.ctx.settings.workers.rollups;
    let ctx = term.ctx.clone();
    let clusters = term.controller(&caches.clusters).await;
    let clusters = match &caches.placed {
        Some(placed) => clusters.watches_shared_stream(placed.changes().await, placed_on(ctx)),
        None => clusters.watches_shared_stream(caches.deployments.changes().await, placed_on(ctx)),
    };
    let groups_of = caches.groups.reader();
    let groups = term
        .controller(&caches.groups)
        .await
        .watches_shared_stream(caches.clusters.changes().await, move |c| {
            in_namespace(&groups_of, c.namespace())
        });
    futures::join!(
        term.run(
            clusters,
            term.rollup(workers),
            "cluster-status",
            reconcile_cluster,
            retry
        ),
        term.run(
            groups,
            term.rollup(workers),
            "clustergroup-status",
            reconcile_group,
            retry
        ),
    );
}

#[cfg(test)]
mod tests {
    use fleet_api::{AgentStatus, BundleDeployment, ClusterSpec};

    use super::*;

    #[test]
    fn an_agent_that_stopped_checking_in_makes_its_cluster_not_ready() {
        let now: jiff::Timestamp = "2026-01-01T12:00:00Z".parse().expect("time");
        let mut cluster = Cluster::new("c", ClusterSpec::default());
        let (ok, message, _) = agent_freshness(&cluster, Duration::from_secs(300), now);
        assert!(!ok);
        assert!(
            message
                .unwrap_or_default()
                .contains("waiting for the agent")
        );
        cluster.status = Some(ClusterStatus {
            agent: AgentStatus {
                last_seen: Some("2026-01-01T11:58:00Z".to_owned()),
                ..AgentStatus::default()
            },
            ..ClusterStatus::default()
        });
        let (ok, _, recheck) = agent_freshness(&cluster, Duration::from_secs(300), now);
        assert!(ok);
        assert_eq!(recheck, Some(Duration::from_secs(181)));
        let (ok, message, _) = agent_freshness(&cluster, Duration::from_secs(60), now);
        assert!(!ok);
        assert!(
            message.unwrap_or_default().contains("120s ago"),
            "says since when"
        );
    }

    fn seen_at(name: &str, last_seen: &str, ready: bool) -> Arc<Cluster> {
        let mut cluster = Cluster::new(name, ClusterSpec::default());
        cluster.metadata.namespace = Some("fleet-default".to_owned());
        cluster
            .labels_mut()
            .insert("env".to_owned(), "prod".to_owned());
        cluster.status = Some(ClusterStatus {
            agent: AgentStatus {
                last_seen: Some(last_seen.to_owned()),
                ..AgentStatus::default()
            },
            conditions: vec![fleet_api::Condition {
                type_: "Ready".to_owned(),
                status: if ready { "True" } else { "False" }.to_owned(),
                ..Default::default()
            }],
            ..ClusterStatus::default()
        });
        Arc::new(cluster)
    }

    fn deployment(bundle: &str, repo: &str, ready: bool) -> Arc<Placement> {
        let mut bd = BundleDeployment::new(bundle, Default::default());
        bd.metadata.namespace = Some("cluster-fleet-default-c".to_owned());
        bd.labels_mut()
            .insert(BUNDLE_NAMESPACE.to_owned(), "fleet-default".to_owned());
        bd.labels_mut()
            .insert(REPO_NAME.to_owned(), repo.to_owned());
        bd.spec.deployment_id = Some("s-1:o".to_owned());
        bd.spec.staged_deployment_id = Some("s-1:o".to_owned());
        if ready {
            bd.status = Some(fleet_api::BundleDeploymentStatus {
                applied_deployment_id: Some("s-1:o".to_owned()),
                ready: true,
                non_modified: true,
                ..Default::default()
            });
        }
        Arc::new(Placement::from(&crate::deployed::Deployed::from(&bd)))
    }

    #[test]
    fn a_cluster_rolls_up_its_deployments_and_repos() {
        let now: jiff::Timestamp = "2026-01-01T12:00:00Z".parse().expect("time");
        let cluster = seen_at("c", "2026-01-01T11:59:00Z", true);
        let timeout = Duration::from_secs(300);
        // (deployments, ready bundles, ready repos / desired, Ready)
        let cases = [
            (vec![], "0/0", (0, 0), "True"),
            (vec![deployment("a", "r1", true)], "1/1", (1, 1), "True"),
            (
                vec![deployment("a", "r1", true), deployment("b", "r1", false)],
                "1/2",
                (1, 1),
                "False",
            ),
            (
                vec![deployment("a", "r1", false), deployment("b", "r2", false)],
                "0/2",
                (0, 2),
                "False",
            ),
        ];
        for (deployments, bundles, (repos, desired), ready) in cases {
            let (status, _) = cluster_status(&cluster, &deployments, timeout, now);
            assert_eq!(status.display.ready_bundles.as_deref(), Some(bundles));
            assert_eq!(
                (status.ready_git_repos, status.desired_ready_git_repos),
                (repos, desired)
            );
            assert_eq!(status.conditions[0].status, ready, "{bundles}");
            assert_eq!(
                status.namespace.as_deref(),
                Some(deployment_namespace(&cluster).as_str())
            );
        }
        let late = cluster_status(&cluster, &[], Duration::from_secs(30), now).0;
        assert_eq!(late.conditions[0].status, "False");
    }

    #[test]
    fn a_group_counts_the_clusters_its_selector_selects() {
        let selector = |labels: &[(&str, &str)]| {
            serde_json::from_value(serde_json::json!({"matchLabels": labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), serde_json::json!(v)))
                .collect::<serde_json::Map<_, _>>()}))
            .expect("selector")
        };
        let clusters = [
            seen_at("a", "2026-01-01T11:59:00Z", true),
            seen_at("b", "2026-01-01T11:59:00Z", false),
        ];
        // (selector, clusters, non-ready, Ready message)
        let cases = [
            (
                selector(&[("env", "prod")]),
                2,
                vec!["b"],
                Some("NotReady(1) [Cluster b]"),
            ),
            (selector(&[("env", "dev")]), 0, vec![], None),
            (
                selector(&[("-env", "prod")]),
                0,
                vec![],
                Some("invalid spec.selector: "),
            ),
        ];
        for (selector, count, non_ready, message) in cases {
            let mut group = ClusterGroup::new("g", Default::default());
            group.spec.selector = Some(selector);
            let status = group_status(&group, &clusters, "t");
            assert_eq!(status.cluster_count, count);
            assert_eq!(status.non_ready_clusters, non_ready);
            let got = status.conditions[0].message.as_deref();
            match message {
                Some(prefix) => assert!(got.is_some_and(|m| m.starts_with(prefix)), "{got:?}"),
                None => assert_eq!(got, None),
            }
        }
    }
}
