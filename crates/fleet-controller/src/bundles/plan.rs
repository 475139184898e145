//! What a Bundle reconcile writes, decided without I/O: the BundleDeployments its targets
//! should have now (a paused Bundle, and clusters the rollout holds back, get the new
//! deployment staged only), as [`inventory`] changes against those that exist.

use std::collections::BTreeMap;
use std::sync::Arc;

use fleet_api::BundleDeployment;
use fleet_api::labels::{CLUSTER, CLUSTER_NAMESPACE};
use fleet_api::sharding::{BUNDLE_SHARD, CLUSTER_SHARD, ShardLabel};
use fleet_render::rollout;
use fleet_runtime::inventory::{self, Changes};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;

use super::planned::Planned;
use crate::deployed::Deployed;

/// A BundleDeployment's key: (namespace, name).
pub type Key = (String, String);

/// The key of a BundleDeployment, from its metadata.
pub fn key_of(meta: &ObjectMeta) -> Key {
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

/// The BundleDeployments to create, update and prune so that `existing` becomes `targets`
/// (a BundleDeployment per targeted cluster, planned). `rollout` says per target (same order)
/// whether it gets the new deployment now; `None` means paused: existing BundleDeployments
/// only stage the new deployment (a cluster new to the Bundle gets it, as before the pause
/// there was nothing to keep).
/// `written`: the content hashes of writes the cache does not show yet, which count as
/// existing.
pub fn deployments(
    targets: Vec<Planned>,
    rollout: Option<&rollout::Plan>,
    existing: &BTreeMap<Key, Arc<Deployed>>,
    written: BTreeMap<Key, String>,
) -> Result<Changes<Key, Planned>, serde_json::Error> {
    let paused = rollout.is_none();
    let mut desired = Vec::with_capacity(targets.len());
    for (index, planned) in targets.into_iter().enumerate() {
        let promote = rollout.is_none_or(|plan| plan.promote.get(index).copied().unwrap_or(true));
        let planned = match existing.get(&planned.key) {
            // Paused, or held back by the rollout: the new deployment is staged only.
            Some(current) if paused || !promote => planned.changed(|bd| {
                bd.spec.options = current.spec.options.options()?;
                bd.spec.deployment_id = current.spec.deployment_id.as_deref().map(str::to_owned);
                Ok(())
            })?,
            None if !promote => planned.changed(|bd| {
                bd.spec.options = Default::default();
                bd.spec.deployment_id = None;
                Ok(())
            })?,
            _ => planned,
        };
        desired.push((planned.key.clone(), planned.hash.clone(), planned));
    }
    let mut hashes: BTreeMap<Key, Option<String>> = existing
        .iter()
        .map(|(key, bd)| (key.clone(), bd.stamp().map(str::to_owned)))
        .collect();
    hashes.extend(written.into_iter().map(|(key, hash)| (key, Some(hash))));
    Ok(inventory::plan(desired, &hashes))
}

/// Labels a target's BundleDeployment with the dynamic shard of its Bundle (`bundle_shard`)
/// and of its Cluster (`shard_of` its `namespace/name`), counted in `shards`, so that each
/// replica's caches list only its shards' BundleDeployments.
pub fn label_shards(
    bd: &mut BundleDeployment,
    bundle_shard: u32,
    shards: u32,
    shard_of: impl Fn(&str) -> u32,
) {
    let labels = bd.labels_mut();
    let cluster = format!(
        "{}/{}",
        labels.get(CLUSTER_NAMESPACE).map_or("", String::as_str),
        labels.get(CLUSTER).map_or("", String::as_str)
    );
    for (key, shard) in [
        (BUNDLE_SHARD, bundle_shard),
        (CLUSTER_SHARD, shard_of(&cluster)),
    ] {
        labels.insert(key.to_owned(), ShardLabel { key, shards }.value(shard));
    }
}

/// The label a Bundle of `bundle_shard` (counted in `shards`) should carry so that only its
/// shard's replicas cache it, when `labels` lack it: `(key, value)` to set.
pub fn bundle_shard_label(
    labels: &BTreeMap<String, String>,
    bundle_shard: u32,
    shards: u32,
) -> Option<(&'static str, String)> {
    let value = ShardLabel {
        key: BUNDLE_SHARD,
        shards,
    }
    .value(bundle_shard);
    (labels.get(BUNDLE_SHARD) != Some(&value)).then_some((BUNDLE_SHARD, value))
}

#[cfg(test)]
mod tests {
    use fleet_api::{BundleDeploymentOptions, BundleDeploymentSpec};
    use fleet_runtime::inventory::stamp;

    use super::super::planned::content_hash;
    use super::*;

    fn bd(cluster: &str, deployment_id: &str, namespace: &str) -> BundleDeployment {
        let mut bd = BundleDeployment::new(
            "app",
            BundleDeploymentSpec {
                deployment_id: Some(deployment_id.to_owned()),
                staged_deployment_id: Some(deployment_id.to_owned()),
                options: BundleDeploymentOptions {
                    default_namespace: Some(namespace.to_owned()),
                    ..Default::default()
                },
                ..Default::default()
            },
        );
        bd.metadata.namespace = Some(format!("cluster-{cluster}"));
        bd
    }

    fn target(cluster: &str, deployment_id: &str) -> BundleDeployment {
        bd(cluster, deployment_id, "new")
    }

    /// What was written before: the deployment, stamped as the controller stamps it.
    fn written(cluster: &str, deployment_id: &str, namespace: &str) -> Arc<BundleDeployment> {
        let mut bd = bd(cluster, deployment_id, namespace);
        let hash = content_hash(&bd);
        stamp(&mut bd.metadata, &hash);
        Arc::new(bd)
    }

    fn existing(bds: &[Arc<BundleDeployment>]) -> BTreeMap<Key, Arc<Deployed>> {
        // As the cache holds them.
        bds.iter()
            .map(|bd| (key_of(&bd.metadata), Arc::new(Deployed::from(bd.as_ref()))))
            .collect()
    }

    fn promote(flags: &[bool]) -> rollout::Plan {
        rollout::Plan {
            promote: flags.to_vec(),
            partition_of: vec![0; flags.len()],
            unavailable: 0,
            max_unavailable: 0,
            unavailable_partitions: 0,
            max_unavailable_partitions: 0,
            partitions: Vec::new(),
        }
    }

    /// The changes for `targets` as the reconcile plans them, each BundleDeployment to write
    /// decoded as its write will send it.
    fn planned(
        targets: Vec<BundleDeployment>,
        rollout: Option<&rollout::Plan>,
        existing: &BTreeMap<Key, Arc<Deployed>>,
        written: BTreeMap<Key, String>,
    ) -> Changes<Key, BundleDeployment> {
        let targets = targets.into_iter().map(Planned::of).collect();
        let changes = deployments(targets, rollout, existing, written).expect("planned");
        let decoded = |planned: Vec<Planned>| -> Vec<BundleDeployment> {
            planned
                .iter()
                .map(|p| p.deployment().expect("decodes"))
                .collect()
        };
        Changes {
            create: decoded(changes.create),
            update: decoded(changes.update),
            unchanged: changes.unchanged,
            prune: changes.prune,
        }
    }

    fn names(bds: &[BundleDeployment]) -> Vec<String> {
        bds.iter()
            .map(|bd| bd.namespace().unwrap_or_default())
            .collect()
    }

    #[test]
    fn new_targets_are_created_and_unchanged_ones_left_alone() {
        let before = existing(&[written("a", "s-1:o", "new")]);
        let changes = planned(
            vec![target("a", "s-1:o"), target("b", "s-1:o")],
            Some(&promote(&[true, true])),
            &before,
            BTreeMap::new(),
        );
        assert_eq!(names(&changes.create), ["cluster-b"]);
        assert!(changes.update.is_empty());
        assert_eq!(changes.unchanged.len(), 1);
        assert!(changes.prune.is_empty());
        let created = &changes.create[0];
        assert_eq!(
            inventory::hash_of(&created.metadata),
            Some(content_hash(created))
        );
    }

    #[test]
    fn writes_the_cache_does_not_show_yet_are_not_made_again() {
        let mut just_written = target("b", "s-1:o");
        let hash = content_hash(&just_written);
        stamp(&mut just_written.metadata, &hash);
        let key = key_of(&just_written.metadata);
        let changed = target("c", "s-1:o");
        let pending =
            BTreeMap::from([(key, hash), (key_of(&changed.metadata), "older".to_owned())]);
        let changes = planned(
            vec![target("b", "s-1:o"), target("c", "s-1:o")],
            Some(&promote(&[true, true])),
            &BTreeMap::new(),
            pending,
        );
        assert!(changes.create.is_empty(), "{:?}", names(&changes.create));
        assert_eq!(changes.unchanged.len(), 1);
        assert_eq!(
            names(&changes.update),
            ["cluster-c"],
            "written with other content: applied"
        );
    }

    #[test]
    fn a_changed_deployment_is_updated_and_an_untargeted_one_pruned() {
        let before = existing(&[
            written("a", "s-1:o", "new"),
            written("gone", "s-1:o", "new"),
        ]);
        let changes = planned(
            vec![target("a", "s-2:o")],
            Some(&promote(&[true])),
            &before,
            BTreeMap::new(),
        );
        assert_eq!(names(&changes.update), ["cluster-a"]);
        assert_eq!(
            changes.prune,
            [("cluster-gone".to_owned(), "app".to_owned())]
        );
    }

    #[test]
    fn held_back_targets_only_stage_the_new_deployment() {
        let before = existing(&[written("a", "s-1:o", "old")]);
        let changes = planned(
            vec![target("a", "s-2:o"), target("b", "s-2:o")],
            Some(&promote(&[false, false])),
            &before,
            BTreeMap::new(),
        );
        let staged = &changes.update[0];
        assert_eq!(staged.spec.deployment_id.as_deref(), Some("s-1:o"));
        assert_eq!(staged.spec.staged_deployment_id.as_deref(), Some("s-2:o"));
        assert_eq!(
            staged.spec.options.default_namespace.as_deref(),
            Some("old")
        );
        // A new cluster held back gets nothing to deploy yet.
        let waiting = &changes.create[0];
        assert_eq!(waiting.spec.deployment_id, None);
        assert_eq!(waiting.spec.options, BundleDeploymentOptions::default());
    }

    #[test]
    fn a_paused_bundle_stages_on_its_clusters_and_deploys_to_new_ones() {
        let before = existing(&[written("a", "s-1:o", "old")]);
        let changes = planned(
            vec![target("a", "s-2:o"), target("b", "s-2:o")],
            None,
            &before,
            BTreeMap::new(),
        );
        let staged = &changes.update[0];
        assert_eq!(staged.spec.deployment_id.as_deref(), Some("s-1:o"));
        assert_eq!(staged.spec.staged_deployment_id.as_deref(), Some("s-2:o"));
        let new = &changes.create[0];
        assert_eq!(new.spec.deployment_id.as_deref(), Some("s-2:o"));
    }

    #[test]
    fn a_bundle_is_labelled_with_its_shard_once() {
        let labelled = |value: &str| BTreeMap::from([(BUNDLE_SHARD.to_owned(), value.to_owned())]);
        let cases = [
            ("unlabelled", BTreeMap::new(), Some("2-of-6")),
            ("labelled already", labelled("2-of-6"), None),
            ("another shard count", labelled("2-of-4"), Some("2-of-6")),
            ("another shard", labelled("1-of-6"), Some("2-of-6")),
        ];
        for (case, labels, expected) in cases {
            let label = bundle_shard_label(&labels, 2, 6);
            assert_eq!(
                label,
                expected.map(|v| (BUNDLE_SHARD, v.to_owned())),
                "{case}"
            );
        }
    }

    #[test]
    fn deployments_are_labelled_with_their_bundles_and_clusters_shards() {
        let mut targets = vec![target("a", "s-1:o"), target("b", "s-1:o")];
        for (t, cluster) in targets.iter_mut().zip(["a", "b"]) {
            let labels = t.labels_mut();
            labels.insert(CLUSTER_NAMESPACE.to_owned(), "fleet-default".to_owned());
            labels.insert(CLUSTER.to_owned(), cluster.to_owned());
        }
        let shard_of = |key: &str| u32::from(key == "fleet-default/b") * 5;
        for t in &mut targets {
            label_shards(t, 2, 6, shard_of);
        }
        let shards: Vec<(Option<&String>, Option<&String>)> = targets
            .iter()
            .map(|t| {
                let labels = &t.metadata.labels;
                let labels = labels.as_ref().expect("labelled");
                (labels.get(BUNDLE_SHARD), labels.get(CLUSTER_SHARD))
            })
            .collect();
        let (two, zero, five) = (
            "2-of-6".to_owned(),
            "0-of-6".to_owned(),
            "5-of-6".to_owned(),
        );
        assert_eq!(
            shards,
            [(Some(&two), Some(&zero)), (Some(&two), Some(&five))]
        );
        // The labels are part of what is written: a new shard count rewrites them.
        let before = content_hash(&targets[0]);
        label_shards(&mut targets[0], 2, 8, shard_of);
        assert_ne!(content_hash(&targets[0]), before);
    }
}
