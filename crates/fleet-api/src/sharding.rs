//! Fleet's static sharding (`rancher/fleet:pkg/sharding`): objects opt in to a shard with the
//! label [`SHARD_REF`]; a controller started with a shard ID handles exactly the objects
//! labelled with that ID, the unsharded controller handles only unlabelled ones, and an object
//! naming a shard nobody runs is handled by nobody. Each shard elects through a Lease of its
//! own (Fleet's name plus `-<id>`).

use std::collections::BTreeMap;

use crate::labels::SHARD_REF;

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
