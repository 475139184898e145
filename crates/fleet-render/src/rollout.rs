//! A Bundle change rolled out across its clusters under its `rolloutStrategy`, as Fleet does:
//! clusters fall into partitions (explicit `partitions` first, in order; the others into
//! automatic partitions of `autoPartitionSize` once there are `autoPartitionThreshold` of
//! them, else one partition `All`); partition by partition, a cluster gets the new
//! deployment (is *promoted*) while fewer than `maxUnavailable` clusters are unavailable, and
//! the rollout stops at the partition that leaves more than `maxUnavailablePartitions`
//! partitions with more unavailable clusters than they allow. Clusters not promoted keep
//! what they run and have the new deployment staged (`stagedDeploymentID`): OutOfSync.
//!
//! A cluster is unavailable when its BundleDeployment has not applied its deployment or is
//! not ready. Promoting a cluster that is unavailable already takes nothing more away, so it
//! is never held back (a broken cluster gets the fix); the default `maxUnavailable: 100%`
//! therefore never holds anything back. The global `maxUnavailable` is at least 1, so that a
//! rollout always moves; a partition's explicit `maxUnavailable: 0` is honoured (a canary
//! partition must be all available before the next one starts). Pure.

use fleet_api::{BundleDeployment, BundleDeploymentStatus, PartitionStatus, RolloutStrategy};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::target::{ClusterInfo, SelectorError, selection_matches};

/// Fleet's defaults.
pub const DEFAULT_AUTO_PARTITION_THRESHOLD: usize = 200;
const DEFAULT_MAX_UNAVAILABLE: &str = "100%";
const DEFAULT_PARTITION_MAX_UNAVAILABLE: &str = "10%";
const DEFAULT_AUTO_PARTITION_SIZE: &str = "25%";

/// One targeted cluster.
#[derive(Debug, Clone, Copy)]
pub struct Slot<'a> {
    pub cluster: &'a ClusterInfo,
    /// Its BundleDeployment as it is (none: a cluster new to the bundle).
    pub current: Option<&'a dyn Current>,
    /// The deployment ID the bundle wants there now.
    pub wanted: &'a str,
}

impl Slot<'_> {
    fn up_to_date(&self) -> bool {
        self.current
            .is_some_and(|bd| bd.deployment_id() == Some(self.wanted))
    }

    fn unavailable(&self) -> bool {
        self.current.is_some_and(unavailable)
    }
}

/// What a rollout reads of a BundleDeployment as it is: a whole one, or a cache's projection
/// of one.
pub trait Current: std::fmt::Debug {
    /// The deployment it deploys (`spec.deploymentID`).
    fn deployment_id(&self) -> Option<&str>;
    /// What its agent reported.
    fn status(&self) -> Option<&BundleDeploymentStatus>;
}

impl Current for BundleDeployment {
    fn deployment_id(&self) -> Option<&str> {
        self.spec.deployment_id.as_deref()
    }
    fn status(&self) -> Option<&BundleDeploymentStatus> {
        self.status.as_ref()
    }
}

/// Whether a BundleDeployment counts as unavailable for a rollout: its agent has not applied
/// its deployment, or it is not ready.
pub fn unavailable(bd: &(impl Current + ?Sized)) -> bool {
    bd.status().is_none_or(|status| {
        status.applied_deployment_id.as_deref() != bd.deployment_id() || !status.ready
    })
}

/// What a rollout does now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// Per slot (same order): whether it gets the wanted deployment now.
    pub promote: Vec<bool>,
    /// Per slot: the index of its partition in `partitions`.
    pub partition_of: Vec<usize>,
    /// Clusters unavailable once the promotions are made, and the limit.
    pub unavailable: usize,
    pub max_unavailable: usize,
    pub unavailable_partitions: usize,
    pub max_unavailable_partitions: usize,
    pub partitions: Vec<PartitionStatus>,
}

impl Plan {
    /// Slots whose new deployment waits (staged only).
    pub fn held_back(&self) -> usize {
        self.promote.iter().filter(|p| !**p).count()
    }
}

/// The rollout of `slots` under `strategy` (Fleet's defaults when `None`).
pub fn plan(strategy: Option<&RolloutStrategy>, slots: &[Slot<'_>]) -> Result<Plan, SelectorError> {
    let default = RolloutStrategy::default();
    let strategy = strategy.unwrap_or(&default);
    let partitions = partitions(strategy, slots)?;
    let total = slots.len();
    let max_unavailable = limit(
        strategy.max_unavailable.as_ref(),
        DEFAULT_MAX_UNAVAILABLE,
        total,
        1,
    );
    let max_unavailable_partitions = limit(
        strategy.max_unavailable_partitions.as_ref(),
        "0",
        partitions.len(),
        0,
    );
    let mut unavailable_now = slots.iter().filter(|s| s.unavailable()).count();
    let mut promote = vec![false; total];
    let mut partition_of = vec![0; total];
    let mut statuses = Vec::with_capacity(partitions.len());
    let mut unavailable_partitions = 0;
    let mut stopped = false;
    for (number, partition) in partitions.iter().enumerate() {
        let mut unavailable_here = 0;
        for &index in &partition.members {
            partition_of[index] = number;
            let slot = &slots[index];
            if slot.up_to_date() {
                promote[index] = true;
            } else if !stopped && (slot.unavailable() || unavailable_now < max_unavailable) {
                promote[index] = true;
                if !slot.unavailable() {
                    // Available (or new) until it applies the new deployment.
                    unavailable_now += 1;
                }
            }
            // Unavailable once promoted (until it applies), if it was already, or if new.
            let unavailable_after = (promote[index] && !slot.up_to_date())
                || slot.unavailable()
                || slot.current.is_none();
            unavailable_here += usize::from(unavailable_after);
        }
        if unavailable_here > partition.max_unavailable {
            unavailable_partitions += 1;
        }
        if unavailable_partitions > max_unavailable_partitions {
            stopped = true;
        }
        statuses.push(PartitionStatus {
            name: Some(partition.name.clone()),
            count: count(partition.members.len()),
            max_unavailable: count(partition.max_unavailable),
            unavailable: count(unavailable_here),
            ..PartitionStatus::default()
        });
    }
    Ok(Plan {
        promote,
        partition_of,
        unavailable: unavailable_now,
        max_unavailable,
        unavailable_partitions,
        max_unavailable_partitions,
        partitions: statuses,
    })
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

struct Partition {
    name: String,
    max_unavailable: usize,
    members: Vec<usize>,
}

/// The partitions of `slots`, in rollout order.
fn partitions(
    strategy: &RolloutStrategy,
    slots: &[Slot<'_>],
) -> Result<Vec<Partition>, SelectorError> {
    let mut order: Vec<usize> = (0..slots.len()).collect();
    order.sort_by(|a, b| {
        let (a, b) = (slots[*a].cluster, slots[*b].cluster);
        (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name))
    });
    let mut explicit: Vec<Vec<usize>> = vec![Vec::new(); strategy.partitions.len()];
    let mut rest = Vec::new();
    'slots: for index in order {
        for (p, partition) in strategy.partitions.iter().enumerate() {
            if selection_matches(&partition.clusters, slots[index].cluster)? {
                explicit[p].push(index);
                continue 'slots;
            }
        }
        rest.push(index);
    }
    let mut out: Vec<Partition> = strategy
        .partitions
        .iter()
        .zip(explicit)
        .enumerate()
        .map(|(i, (partition, members))| Partition {
            name: partition
                .name
                .clone()
                .unwrap_or_else(|| format!("Partition {i}")),
            // An explicit `0` holds: a canary partition must be all available to go on.
            max_unavailable: partition.max_unavailable.as_ref().map_or_else(
                || limit(None, DEFAULT_PARTITION_MAX_UNAVAILABLE, members.len(), 1),
                |value| scaled(value, members.len()),
            ),
            members,
        })
        .collect();
    if rest.is_empty() {
        return Ok(out);
    }
    let threshold = strategy
        .auto_partition_threshold
        .as_ref()
        .map_or(DEFAULT_AUTO_PARTITION_THRESHOLD, |t| scaled(t, rest.len()));
    let max_unavailable = |members: usize| {
        limit(
            strategy.max_unavailable.as_ref(),
            DEFAULT_MAX_UNAVAILABLE,
            members,
            1,
        )
    };
    if rest.len() < threshold {
        out.push(Partition {
            name: "All".to_owned(),
            max_unavailable: max_unavailable(rest.len()),
            members: rest,
        });
        return Ok(out);
    }
    let size = limit(
        strategy.auto_partition_size.as_ref(),
        DEFAULT_AUTO_PARTITION_SIZE,
        rest.len(),
        1,
    );
    for (i, chunk) in rest.chunks(size).enumerate() {
        out.push(Partition {
            name: format!("Partition {}", out.len() + i),
            max_unavailable: max_unavailable(chunk.len()),
            members: chunk.to_vec(),
        });
    }
    Ok(out)
}

/// An int-or-percent of `total` (percentages round up), `default` when unset, at least
/// `floor`.
fn limit(value: Option<&IntOrString>, default: &str, total: usize, floor: usize) -> usize {
    let fallback = IntOrString::String(default.to_owned());
    scaled(value.unwrap_or(&fallback), total).max(floor)
}

fn scaled(value: &IntOrString, total: usize) -> usize {
    match value {
        IntOrString::Int(n) => usize::try_from(*n).unwrap_or(0),
        IntOrString::String(text) => match text.trim().strip_suffix('%') {
            Some(percent) => percent
                .trim()
                .parse::<usize>()
                .map_or(0, |p| (total * p).div_ceil(100)),
            None => text.trim().parse().unwrap_or(0),
        },
    }
}

#[cfg(test)]
mod tests {
    use fleet_api::{BundleDeploymentSpec, BundleDeploymentStatus};

    use super::*;

    fn cluster(name: &str, env: &str) -> ClusterInfo {
        ClusterInfo {
            name: name.to_owned(),
            namespace: "fleet-default".to_owned(),
            labels: [("env".to_owned(), env.to_owned())].into(),
            ..ClusterInfo::default()
        }
    }

    /// A BundleDeployment running `id`, ready or not.
    fn running(id: &str, ready: bool) -> BundleDeployment {
        let mut bd = BundleDeployment::new(
            "b",
            BundleDeploymentSpec {
                deployment_id: Some(id.to_owned()),
                ..BundleDeploymentSpec::default()
            },
        );
        bd.status = Some(BundleDeploymentStatus {
            applied_deployment_id: Some(id.to_owned()),
            ready,
            ..BundleDeploymentStatus::default()
        });
        bd
    }

    fn strategy(yaml: &str) -> RolloutStrategy {
        serde_saphyr::from_str(yaml).expect("strategy")
    }

    #[test]
    fn by_default_every_cluster_gets_the_change_at_once() {
        let clusters: Vec<ClusterInfo> =
            (0..5).map(|i| cluster(&format!("c{i}"), "prod")).collect();
        let old = running("old", true);
        let slots: Vec<Slot> = clusters
            .iter()
            .map(|c| Slot {
                cluster: c,
                current: Some(&old),
                wanted: "new",
            })
            .collect();
        let plan = plan(None, &slots).expect("plan");
        assert_eq!(plan.promote, vec![true; 5]);
        assert_eq!(plan.partitions.len(), 1);
        assert_eq!(plan.partitions[0].name.as_deref(), Some("All"));
    }

    #[test]
    fn max_unavailable_holds_back_available_clusters_but_not_broken_ones() {
        let clusters: Vec<ClusterInfo> =
            (0..4).map(|i| cluster(&format!("c{i}"), "prod")).collect();
        let (ok, broken) = (running("old", true), running("old", false));
        let slots = [
            Slot {
                cluster: &clusters[0],
                current: Some(&ok),
                wanted: "new",
            },
            Slot {
                cluster: &clusters[1],
                current: Some(&ok),
                wanted: "new",
            },
            Slot {
                cluster: &clusters[2],
                current: Some(&broken),
                wanted: "new",
            },
            Slot {
                cluster: &clusters[3],
                current: Some(&ok),
                wanted: "new",
            },
        ];
        let plan = plan(Some(&strategy("maxUnavailable: 2\n")), &slots).expect("plan");
        // One is unavailable already: one more may go; the broken one always gets the fix.
        assert_eq!(plan.promote, [true, false, true, false]);
        assert_eq!((plan.unavailable, plan.max_unavailable), (2, 2));
        assert_eq!(plan.held_back(), 2);
    }

    #[test]
    fn a_canary_partition_that_is_not_ready_stops_the_rollout() {
        let canary = cluster("a-canary", "canary");
        let prod: Vec<ClusterInfo> = (0..3).map(|i| cluster(&format!("p{i}"), "prod")).collect();
        let s = strategy(
            "partitions:\n- name: canary\n  maxUnavailable: 0\n  clusterSelector:\n    matchLabels: {env: canary}\n",
        );
        let old = running("old", true);
        let mut slots = vec![Slot {
            cluster: &canary,
            current: Some(&old),
            wanted: "new",
        }];
        slots.extend(prod.iter().map(|c| Slot {
            cluster: c,
            current: Some(&old),
            wanted: "new",
        }));
        let first = plan(Some(&s), &slots).expect("plan");
        assert_eq!(
            first.promote,
            [true, false, false, false],
            "only the canary moves"
        );
        assert_eq!(first.unavailable_partitions, 1);
        assert_eq!(first.partitions[0].name.as_deref(), Some("canary"));

        // The canary applied the change and is ready: the rest follows.
        let updated = running("new", true);
        slots[0].current = Some(&updated);
        let second = plan(Some(&s), &slots).expect("plan");
        assert_eq!(second.promote, [true; 4]);
        assert_eq!(second.unavailable_partitions, 0);
    }

    #[test]
    fn many_clusters_are_partitioned_automatically() {
        let clusters: Vec<ClusterInfo> =
            (0..8).map(|i| cluster(&format!("c{i}"), "prod")).collect();
        let slots: Vec<Slot> = clusters
            .iter()
            .map(|c| Slot {
                cluster: c,
                current: None,
                wanted: "new",
            })
            .collect();
        let s = strategy("autoPartitionThreshold: 4\nautoPartitionSize: 25%\n");
        let plan = plan(Some(&s), &slots).expect("plan");
        assert_eq!(plan.partitions.len(), 4);
        assert!(plan.partitions.iter().all(|p| p.count == 2));
        assert_eq!(
            plan.promote,
            vec![true; 8],
            "maxUnavailable 100%: nothing waits"
        );
    }

    #[test]
    fn int_or_percent_values_scale_and_round_up() {
        assert_eq!(scaled(&IntOrString::String("10%".to_owned()), 15), 2);
        assert_eq!(scaled(&IntOrString::String("7".to_owned()), 15), 7);
        assert_eq!(scaled(&IntOrString::Int(3), 15), 3);
        assert_eq!(limit(None, "10%", 3, 1), 1);
        assert_eq!(limit(None, "0", 3, 0), 0);
    }
}
