//! A Bundle's status, decided without I/O: the roll-up of its BundleDeployments' states, its
//! `Ready` condition (a targeting error first), and its rollout as it stands (partitions,
//! their limits and unavailable clusters).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use fleet_api::labels::{CLUSTER, CLUSTER_NAMESPACE};
use fleet_api::{Bundle, BundleDisplay, BundleStatus, BundleSummary, PartitionStatus};
use fleet_render::rollout;
use fleet_render::target::ClusterInfo;

use super::plan::Key;
use crate::deployed::Deployed;
use crate::summary;

/// The Bundle's status from `owned` (its BundleDeployments), `error` (why it cannot be
/// targeted, if so) and, with explicit rollout partitions, the `clusters` it may target.
pub fn next(
    bundle: &Bundle,
    owned: &BTreeMap<Key, Arc<Deployed>>,
    clusters: Option<Vec<&ClusterInfo>>,
    error: Option<String>,
    now: &str,
) -> BundleStatus {
    let current = bundle.status.clone().unwrap_or_default();
    let mut summary = BundleSummary::default();
    for bd in owned.values() {
        summary::add_deployment(&mut summary, &cluster_of(bd), bd.as_ref());
    }
    let rollout = rollout_status(bundle, clusters, owned);
    let previous = current.conditions.iter().find(|c| c.type_ == "Ready");
    let ready = match error {
        Some(message) => summary::not_ready("Ready", false, Some(message), now, previous),
        None => summary::ready_condition(&summary, "Cluster", now, previous),
    };
    BundleStatus {
        display: BundleDisplay {
            ready_clusters: Some(format!("{}/{}", summary.ready, summary.desired_ready)),
            state: summary::display_state(&summary).map(|s| summary::state_name(s).to_owned()),
        },
        summary,
        conditions: vec![ready],
        observed_generation: bundle.metadata.generation.unwrap_or_default(),
        unavailable: rollout.unavailable,
        unavailable_partitions: rollout.unavailable_partitions,
        max_unavailable: rollout.max_unavailable,
        max_unavailable_partitions: rollout.max_unavailable_partitions,
        partition_status: rollout.partitions,
        ..current
    }
}

/// The fields of `status` the controller applies (its own; the others' stay theirs).
pub fn patch(status: &BundleStatus) -> serde_json::Value {
    serde_json::json!({
        "summary": status.summary,
        "display": status.display,
        "conditions": status.conditions,
        "observedGeneration": status.observed_generation,
        "unavailable": status.unavailable,
        "unavailablePartitions": status.unavailable_partitions,
        "maxUnavailable": status.max_unavailable,
        "maxUnavailablePartitions": status.max_unavailable_partitions,
        "partitions": status.partition_status,
    })
}

/// `cluster-namespace/cluster` of a BundleDeployment, from its labels.
pub fn cluster_of(bd: &Deployed) -> String {
    format!(
        "{}/{}",
        bd.label(CLUSTER_NAMESPACE).unwrap_or_default(),
        bd.label(CLUSTER).unwrap_or_default()
    )
}

/// The rollout fields of a Bundle's status.
#[derive(Debug, Default)]
struct RolloutStatus {
    unavailable: i64,
    unavailable_partitions: i64,
    max_unavailable: i64,
    max_unavailable_partitions: i64,
    partitions: Vec<PartitionStatus>,
}

/// The Bundle's rollout as it stands: its partitions (of the clusters its BundleDeployments
/// are on), their limits, and how many of their clusters are unavailable now.
fn rollout_status(
    bundle: &Bundle,
    explicit: Option<Vec<&ClusterInfo>>,
    owned: &BTreeMap<Key, Arc<Deployed>>,
) -> RolloutStatus {
    let explicit_partitions = explicit.is_some();
    let mut clusters: BTreeMap<String, Cow<'_, ClusterInfo>> = explicit
        .unwrap_or_default()
        .into_iter()
        .map(|info| {
            let key = format!("{}/{}", info.namespace, info.name);
            (key, Cow::Borrowed(info))
        })
        .collect();
    if !explicit_partitions {
        for bd in owned.values() {
            let (Some(namespace), Some(name)) = (bd.label(CLUSTER_NAMESPACE), bd.label(CLUSTER))
            else {
                continue;
            };
            let info = ClusterInfo {
                name: name.to_owned(),
                namespace: namespace.to_owned(),
                ..ClusterInfo::default()
            };
            clusters.insert(cluster_of(bd), Cow::Owned(info));
        }
    }
    let placed: Vec<(&ClusterInfo, &Deployed)> = owned
        .values()
        .filter_map(|bd| Some((clusters.get(&cluster_of(bd))?.as_ref(), bd.as_ref())))
        .collect();
    let slots: Vec<rollout::Slot<'_>> = placed
        .iter()
        .map(|(cluster, bd)| rollout::Slot {
            cluster,
            current: Some(*bd),
            wanted: bd.spec.staged_deployment_id.as_deref().unwrap_or_default(),
        })
        .collect();
    let Ok(plan) = rollout::plan(bundle.spec.rollout_strategy.as_ref(), &slots) else {
        // Reported as the Bundle's targeting error.
        return RolloutStatus::default();
    };
    let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    let mut partitions = plan.partitions.clone();
    let mut unavailable_partitions = 0;
    for (number, partition) in partitions.iter_mut().enumerate() {
        partition.summary = BundleSummary::default();
        let members = placed
            .iter()
            .zip(&plan.partition_of)
            .filter(|(_, p)| **p == number)
            .map(|((_, bd), _)| *bd);
        let mut unavailable = 0;
        for bd in members {
            summary::add_deployment(&mut partition.summary, &cluster_of(bd), bd);
            unavailable += usize::from(rollout::unavailable(bd));
        }
        partition.unavailable = count(unavailable);
        if partition.unavailable > partition.max_unavailable {
            unavailable_partitions += 1;
        }
    }
    RolloutStatus {
        unavailable: count(
            placed
                .iter()
                .filter(|(_, bd)| rollout::unavailable(*bd))
                .count(),
        ),
        unavailable_partitions,
        max_unavailable: count(plan.max_unavailable),
        max_unavailable_partitions: count(plan.max_unavailable_partitions),
        partitions,
    }
}

#[cfg(test)]
mod tests {
    use fleet_api::{BundleDeployment, BundleDeploymentSpec, BundleSpec};
    use kube::ResourceExt;

    use super::*;

    fn waiting_on(cluster: &str) -> Arc<BundleDeployment> {
        let mut bd = BundleDeployment::new(
            "app",
            BundleDeploymentSpec {
                deployment_id: Some("s-1:o".to_owned()),
                ..Default::default()
            },
        );
        bd.metadata.namespace = Some(format!("cluster-{cluster}"));
        bd.labels_mut()
            .insert(CLUSTER_NAMESPACE.to_owned(), "fleet-default".to_owned());
        bd.labels_mut()
            .insert(CLUSTER.to_owned(), cluster.to_owned());
        Arc::new(bd)
    }

    fn owned(bds: &[Arc<BundleDeployment>]) -> BTreeMap<Key, Arc<Deployed>> {
        bds.iter()
            .map(|bd| {
                let cached = Deployed::from(bd.as_ref());
                (super::super::plan::key_of(&bd.metadata), Arc::new(cached))
            })
            .collect()
    }

    fn ready(status: &BundleStatus) -> (&str, Option<&str>) {
        let ready = &status.conditions[0];
        (ready.status.as_str(), ready.message.as_deref())
    }

    #[test]
    fn the_status_rolls_up_the_deployments_and_a_targeting_error_comes_first() {
        let bundle = Bundle::new("app", BundleSpec::default());
        let none = next(&bundle, &BTreeMap::new(), None, None, "t1");
        assert_eq!(ready(&none), ("True", None));
        assert_eq!(none.display.ready_clusters.as_deref(), Some("0/0"));

        let two = owned(&[waiting_on("a"), waiting_on("b")]);
        let waiting = next(&bundle, &two, None, None, "t1");
        assert_eq!(waiting.display.ready_clusters.as_deref(), Some("0/2"));
        assert_eq!(waiting.display.state.as_deref(), Some("WaitApplied"));
        let (status, message) = ready(&waiting);
        assert_eq!(status, "False");
        assert!(
            message.is_some_and(|m| m.starts_with("WaitApplied(2) [Cluster fleet-default/a")),
            "{message:?}"
        );

        let error = Some("invalid label key".to_owned());
        let refused = next(&bundle, &two, None, error, "t1");
        assert_eq!(ready(&refused), ("False", Some("invalid label key")));
    }

    #[test]
    fn the_same_facts_give_the_same_status() {
        let mut bundle = Bundle::new("app", BundleSpec::default());
        let two = owned(&[waiting_on("a"), waiting_on("b")]);
        let first = next(&bundle, &two, None, None, "t1");
        bundle.status = Some(first.clone());
        assert_eq!(next(&bundle, &two, None, None, "t2"), first);
    }
}
