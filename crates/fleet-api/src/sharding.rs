//! Fleet's static sharding (`rancher/fleet:pkg/sharding`): objects opt in to a shard with the
//! label [`SHARD_REF`]; a controller started with a shard ID handles exactly the objects
//! labelled with that ID, the unsharded controller handles only unlabelled ones, and an object
//! naming a shard nobody runs is handled by nobody. Each shard elects through a Lease of its
//! own (Fleet's name plus `-<id>`).
//!
//! fleet-rs' dynamic shards (beyond Fleet) label the controller's BundleDeployments with the
//! shard of their Bundle ([`BUNDLE_SHARD`]) and of their Cluster ([`CLUSTER_SHARD`]), so a
//! replica's caches list only its shards' objects ([`dynamic_selector`]); a Bundle is sharded
//! with the GitRepo or HelmOp it comes from ([`bundle_shard_key`]), so one shard holds a
//! GitRepo's whole pipeline.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::labels::{HELM_OP_NAME, REPO_NAME, SHARD_REF};

/// On a Bundle and its BundleDeployments: the dynamic shard of the Bundle
/// (`<shard>-of-<shards>`).
pub const BUNDLE_SHARD: &str = "shards.fleet-rs.io/bundle";
/// On a BundleDeployment: the dynamic shard of its Cluster (`<shard>-of-<shards>`).
pub const CLUSTER_SHARD: &str = "shards.fleet-rs.io/cluster";

/// A dynamic-shard label and the shard count its values are counted in. The count is part of
/// the value, so replicas run with another count never read these values as theirs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardLabel {
    pub key: &'static str,
    pub shards: u32,
}

impl ShardLabel {
    /// The label's value for `shard`.
    pub fn value(&self, shard: u32) -> String {
        format!("{shard}-of-{}", self.shards)
    }
}

/// The label selector of the objects a replica holding the `held` shards caches: every
/// object but those labelled with another shard of this count (`<key> notin (...)`), so
/// objects not labelled yet, or labelled under another shard count, are seen by every replica
/// until their writer relabels them (nothing is missed while `--shards` changes). `None`: all
/// shards are held, every object is wanted.
pub fn dynamic_selector(label: ShardLabel, held: &BTreeSet<u32>) -> Option<String> {
    let others: Vec<String> = (0..label.shards)
        .filter(|shard| !held.contains(shard))
        .map(|shard| label.value(shard))
        .collect();
    if others.is_empty() {
        return None;
    }
    Some(format!("{} notin ({})", label.key, others.join(",")))
}

/// The key a Bundle (with this metadata) is sharded by (`namespace/name`): that of the
/// GitRepo or HelmOp it comes from (whose reconcilers are sharded by it too), its own
/// otherwise.
pub fn bundle_shard_key(metadata: &ObjectMeta) -> String {
    let name = metadata.name.as_deref().unwrap_or_default();
    let labels = metadata.labels.as_ref();
    let label = |key: &str| labels.and_then(|labels| labels.get(key));
    let owner = label(REPO_NAME)
        .or_else(|| label(HELM_OP_NAME))
        .map_or(name, String::as_str);
    format!(
        "{}/{owner}",
        metadata.namespace.as_deref().unwrap_or_default()
    )
}

/// Which objects a controller replica handles.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shard(Option<String>);

impl Shard {
    /// The shard of `--shard-id` (none or empty: the unsharded controller).
    pub fn new(id: Option<&str>) -> Self {
        Self(id.filter(|id| !id.is_empty()).map(str::to_owned))
    }

    /// The shard's ID; `None` for the unsharded controller.
    pub fn id(&self) -> Option<&str> {
        self.0.as_deref()
    }

    /// Whether this is the unsharded controller (it alone runs what Fleet does not shard:
    /// Cluster and ClusterGroup roll-ups, registration, agent management).
    pub fn is_default(&self) -> bool {
        self.0.is_none()
    }

    /// The Lease of this shard: Fleet's name for the unsharded one (`...-shard`), with `-<id>`
    /// for a shard.
    pub fn lease(&self, unsharded: &str) -> String {
        match &self.0 {
            Some(id) => format!("{unsharded}-{id}"),
            None => unsharded.to_owned(),
        }
    }

    /// The label selector of this shard's objects, for list and watch requests.
    pub fn label_selector(&self) -> String {
        match &self.0 {
            Some(id) => format!("{SHARD_REF}={id}"),
            None => format!("!{SHARD_REF}"),
        }
    }

    /// Whether an object with `labels` belongs to this shard (Fleet's `ShouldProcess`).
    pub fn owns(&self, labels: &BTreeMap<String, String>) -> bool {
        labels.get(SHARD_REF).map(String::as_str) == self.id()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(shard: Option<&str>) -> BTreeMap<String, String> {
        shard
            .map(|s| BTreeMap::from([(SHARD_REF.to_owned(), s.to_owned())]))
            .unwrap_or_default()
    }

    #[test]
    fn each_object_has_at_most_one_shard_as_fleet_decides() {
        let default = Shard::new(None);
        let a = Shard::new(Some("a"));
        assert_eq!(Shard::new(Some("")), default, "an empty ID is no shard");
        let cases = [
            (&default, None, true),
            (&default, Some("a"), false),
            (&a, Some("a"), true),
            (&a, None, false),
            (&a, Some("b"), false),
            (&default, Some("unknown"), false),
        ];
        for (shard, label, owns) in cases {
            assert_eq!(shard.owns(&labels(label)), owns, "{shard:?} / {label:?}");
        }
    }

    #[test]
    fn dynamic_selectors_leave_out_the_other_shards_of_their_count() {
        let label = ShardLabel {
            key: BUNDLE_SHARD,
            shards: 4,
        };
        assert_eq!(
            dynamic_selector(label, &BTreeSet::from([3, 1])).as_deref(),
            Some("shards.fleet-rs.io/bundle notin (0-of-4,2-of-4)")
        );
        assert_eq!(
            dynamic_selector(label, &BTreeSet::new()).as_deref(),
            Some("shards.fleet-rs.io/bundle notin (0-of-4,1-of-4,2-of-4,3-of-4)"),
            "holding nothing: only objects not labelled yet"
        );
        assert_eq!(dynamic_selector(label, &BTreeSet::from([0, 1, 2, 3])), None);
    }

    #[test]
    fn a_bundle_is_sharded_with_its_gitrepo_or_helmop() {
        let with = |key: &str| BTreeMap::from([(key.to_owned(), "owner".to_owned())]);
        let cases = [
            (BTreeMap::new(), "ns/b"),
            (with(REPO_NAME), "ns/owner"),
            (with(HELM_OP_NAME), "ns/owner"),
            (with("other"), "ns/b"),
        ];
        for (labels, key) in cases {
            let metadata = ObjectMeta {
                namespace: Some("ns".to_owned()),
                name: Some("b".to_owned()),
                labels: Some(labels.clone()),
                ..ObjectMeta::default()
            };
            assert_eq!(bundle_shard_key(&metadata), key, "{labels:?}");
        }
    }

    #[test]
    fn leases_and_selectors_are_fleets() {
        let lease = "fleet-controller-leader-election-shard";
        assert_eq!(Shard::new(None).lease(lease), lease);
        assert_eq!(
            Shard::new(Some("eu")).lease(lease),
            "fleet-controller-leader-election-shard-eu"
        );
        assert_eq!(
            Shard::new(None).label_selector(),
            "!fleet.cattle.io/shard-ref"
        );
        assert_eq!(
            Shard::new(Some("eu")).label_selector(),
            "fleet.cattle.io/shard-ref=eu"
        );
    }
}
