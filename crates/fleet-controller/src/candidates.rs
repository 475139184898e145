//! The clusters a Bundle may target ([`Candidate`]s), built once for the Bundle reconciles
//! that run at the same time. A candidate costs about 4 KiB (its cluster's labels,
//! annotations, groups and template values), and a fan-out reconciles every Bundle of a
//! namespace together: without sharing, each reconcile would hold its own copy of the same
//! list. Only a [`Weak`] reference is kept: the list is freed when the last reconcile using it
//! ends, and a list built from other objects (a Cluster or ClusterGroup changed since: another
//! resourceVersion) or for other namespaces is never handed out.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use fleet_api::{Cluster, ClusterGroup};
use fleet_render::deployments::{Candidate, candidate};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// What a list of candidates was built from: the namespaces, and the Clusters and
/// ClusterGroups in them, each at its resourceVersion.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Inputs {
    namespaces: Vec<String>,
    clusters: usize,
    groups: usize,
    /// A hash of every (namespace, name, resourceVersion), in order.
    versions: u64,
}

/// The candidates in use, if any reconcile still holds them.
#[derive(Debug, Default)]
pub struct Shared {
    last: Mutex<Option<(Inputs, Weak<[Candidate]>)>>,
}

impl Shared {
    /// The candidates among `clusters` in `namespaces` (not being deleted), with their
    /// groups among `groups`, ordered by namespace and name: the list in use if it was built
    /// from the same objects, else a new one. Reconciles asking at once wait for one build.
    pub fn get(
        &self,
        namespaces: &[String],
        clusters: &[Arc<Cluster>],
        groups: &[Arc<ClusterGroup>],
    ) -> Arc<[Candidate]> {
        let in_scope = |meta: &ObjectMeta| {
            meta.namespace
                .as_ref()
                .is_some_and(|n| namespaces.contains(n))
        };
        let mut clusters: Vec<&Cluster> = clusters
            .iter()
            .map(AsRef::as_ref)
            .filter(|c| in_scope(&c.metadata) && c.metadata.deletion_timestamp.is_none())
            .collect();
        clusters.sort_by(|a, b| by_name(&a.metadata, &b.metadata));
        let mut groups: Vec<&ClusterGroup> = groups
            .iter()
            .map(AsRef::as_ref)
            .filter(|g| in_scope(&g.metadata))
            .collect();
        groups.sort_by(|a, b| by_name(&a.metadata, &b.metadata));
        let inputs = Inputs {
            namespaces: namespaces.to_vec(),
            clusters: clusters.len(),
            groups: groups.len(),
            versions: versions(&clusters, &groups),
        };
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(candidates) = last
            .as_ref()
            .filter(|(built, _)| *built == inputs)
            .and_then(|(_, candidates)| candidates.upgrade())
        {
            return candidates;
        }
        let candidates: Arc<[Candidate]> = clusters
            .iter()
            .map(|cluster| {
                let namespace = &cluster.metadata.namespace;
                let own_groups = groups
                    .iter()
                    .copied()
                    .filter(|g| &g.metadata.namespace == namespace);
                candidate(cluster, own_groups)
            })
            .collect();
        *last = Some((inputs, Arc::downgrade(&candidates)));
        candidates
    }
}

/// Orders objects by namespace, then name.
fn by_name(a: &ObjectMeta, b: &ObjectMeta) -> std::cmp::Ordering {
    (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name))
}

/// A hash of the objects' (namespace, name, resourceVersion), in order.
fn versions(clusters: &[&Cluster], groups: &[&ClusterGroup]) -> u64 {
    let mut hasher = DefaultHasher::new();
    for meta in clusters
        .iter()
        .map(|c| &c.metadata)
        .chain(groups.iter().map(|g| &g.metadata))
    {
        (&meta.namespace, &meta.name, &meta.resource_version).hash(&mut hasher);
    }
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use fleet_api::{ClusterGroupSpec, ClusterSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    use super::*;

    fn cluster(namespace: &str, name: &str, version: &str) -> Arc<Cluster> {
        let mut cluster = Cluster::new(name, ClusterSpec::default());
        cluster.metadata.namespace = Some(namespace.to_owned());
        cluster.metadata.resource_version = Some(version.to_owned());
        cluster.metadata.labels = Some([("env".to_owned(), "dev".to_owned())].into());
        Arc::new(cluster)
    }

    fn group(namespace: &str, version: &str) -> Arc<ClusterGroup> {
        let mut group = ClusterGroup::new(
            "all",
            ClusterGroupSpec {
                selector: Some(LabelSelector::default()),
            },
        );
        group.metadata.namespace = Some(namespace.to_owned());
        group.metadata.resource_version = Some(version.to_owned());
        Arc::new(group)
    }

    fn names(candidates: &[Candidate]) -> Vec<String> {
        candidates
            .iter()
            .map(|c| format!("{}/{}", c.info.namespace, c.info.name))
            .collect()
    }

    #[test]
    fn reconciles_at_once_share_one_list_of_the_same_objects() {
        let shared = Shared::default();
        let ns = ["fleet-default".to_owned()];
        let clusters = [
            cluster("fleet-default", "b", "2"),
            cluster("fleet-default", "a", "1"),
            cluster("elsewhere", "c", "3"),
        ];
        let groups = [group("fleet-default", "4")];
        let first = shared.get(&ns, &clusters, &groups);
        assert_eq!(names(&first), ["fleet-default/a", "fleet-default/b"]);
        assert_eq!(
            first[0].info.groups.len(),
            1,
            "in the group of its namespace"
        );
        let second = shared.get(&ns, &clusters, &groups);
        assert!(Arc::ptr_eq(&first, &second), "the same objects: shared");
    }

    #[test]
    fn a_list_of_other_objects_or_no_longer_in_use_is_built_again() {
        let shared = Shared::default();
        let ns = ["fleet-default".to_owned()];
        let clusters = [cluster("fleet-default", "a", "1")];
        let groups = [group("fleet-default", "4")];
        let first = shared.get(&ns, &clusters, &groups);
        for (what, clusters, groups) in [
            (
                "a Cluster changed",
                [cluster("fleet-default", "a", "5")],
                groups.clone(),
            ),
            (
                "a ClusterGroup changed",
                clusters.clone(),
                [group("fleet-default", "6")],
            ),
        ] {
            let other = shared.get(&ns, &clusters, &groups);
            assert!(!Arc::ptr_eq(&first, &other), "{what}");
        }
        let wider = ["fleet-default".to_owned(), "mapped".to_owned()];
        let other = shared.get(&wider, &clusters, &groups);
        assert!(!Arc::ptr_eq(&first, &other), "other namespaces");
        // Freed once no reconcile holds it; the next one builds its own.
        drop((first, other));
        let last = shared.last.lock().expect("not poisoned");
        let (_, kept) = last.as_ref().expect("one was built");
        assert!(kept.upgrade().is_none(), "nothing kept once unused");
        drop(last);
        let again = shared.get(&ns, &clusters, &groups);
        assert_eq!(names(&again), ["fleet-default/a"]);
    }
}
