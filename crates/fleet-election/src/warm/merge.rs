//! Several watches into one cache, decided without I/O: a scoped cache runs a watch per held
//! shard and one for the objects not labelled with a shard yet, and [`Merge`] turns their
//! events into the one stream of applies and deletes the cache's reflector takes.
//!
//! - Each object belongs to the watch that last applied it. A delete from another watch is
//!   dropped: an object relabelled from "not labelled yet" to a shard is deleted by the first
//!   watch and applied by the second, in either order, and must stay.
//! - A watch's (re)list ends with the objects it owned and did not list again deleted.
//! - A released shard's objects are deleted at once; its watch is stopped by the caller.
//! - A shard is covered (its objects are all in the cache) once its list and the list of the
//!   objects not labelled yet are both complete; when the latter starts again (it keeps only
//!   the held shards' objects, [`super::scope`]), shards taken meanwhile wait for it.

use std::collections::{BTreeSet, HashMap, HashSet};

use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher::Event;

/// Which watch an event comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Source {
    /// The objects labelled with this shard.
    Shard(u32),
    /// The objects without a shard label of this count.
    Unlabelled,
}

/// What the merged stream says next.
#[derive(Debug)]
pub(super) enum Out<K> {
    /// An event for the cache's reflector (only `Apply` and `Delete`).
    Event(Event<K>),
    /// Every object of this shard is in the cache once the events before this one are.
    Covered(u32),
}

/// The state of the merge.
#[derive(Debug)]
pub(super) struct Merge<K>
where
    K: kube::Resource<DynamicType = ()>,
{
    owner: HashMap<ObjectRef<K>, Source>,
    /// The objects listed so far by each watch in the middle of a (re)list.
    listing: HashMap<Source, HashSet<ObjectRef<K>>>,
    /// Shards whose list is complete.
    listed: BTreeSet<u32>,
    unlabelled_listed: bool,
}

impl<K> Default for Merge<K>
where
    K: kube::Resource<DynamicType = ()>,
{
    fn default() -> Self {
        Self {
            owner: HashMap::new(),
            listing: HashMap::new(),
            listed: BTreeSet::new(),
            unlabelled_listed: false,
        }
    }
}

impl<K> Merge<K>
where
    K: kube::Resource<DynamicType = ()> + Clone,
{
    /// What `event` of `source`'s watch means for the cache; `cached` finds an object in it
    /// (for the deletes a list implies).
    pub(super) fn on_event(
        &mut self,
        source: Source,
        event: Event<K>,
        cached: impl Fn(&ObjectRef<K>) -> Option<K>,
    ) -> Vec<Out<K>> {
        match event {
            Event::Init => {
                self.listing.insert(source, HashSet::new());
                Vec::new()
            }
            Event::InitApply(object) | Event::Apply(object) => {
                let key = key_of(&object);
                if let Some(listing) = self.listing.get_mut(&source) {
                    listing.insert(key.clone());
                }
                self.owner.insert(key, source);
                vec![Out::Event(Event::Apply(object))]
            }
            Event::Delete(object) => {
                let key = key_of(&object);
                if self.owner.get(&key) == Some(&source) {
                    self.owner.remove(&key);
                    vec![Out::Event(Event::Delete(object))]
                } else {
                    Vec::new()
                }
            }
            Event::InitDone => {
                let listed = self.listing.remove(&source).unwrap_or_default();
                let mut out = self.forget(
                    |key, owner| owner == source && !listed.contains(key),
                    cached,
                );
                match source {
                    Source::Shard(shard) => {
                        self.listed.insert(shard);
                        if self.unlabelled_listed {
                            out.push(Out::Covered(shard));
                        }
                    }
                    Source::Unlabelled => {
                        self.unlabelled_listed = true;
                        out.extend(self.listed.iter().map(|shard| Out::Covered(*shard)));
                    }
                }
                out
            }
        }
    }

    /// The watch of the objects not labelled yet starts again (what it keeps changed with
    /// the shards held): until its list is complete, no shard is covered anew.
    pub(super) fn relist_unlabelled(&mut self) {
        self.listing.remove(&Source::Unlabelled);
        self.unlabelled_listed = false;
    }

    /// Shard `shard` is no longer held: its objects leave the cache.
    pub(super) fn on_release(
        &mut self,
        shard: u32,
        cached: impl Fn(&ObjectRef<K>) -> Option<K>,
    ) -> Vec<Out<K>> {
        self.listed.remove(&shard);
        self.listing.remove(&Source::Shard(shard));
        self.forget(|_, owner| owner == Source::Shard(shard), cached)
    }

    /// Deletes for the objects `which` picks (by key and owner).
    fn forget(
        &mut self,
        which: impl Fn(&ObjectRef<K>, Source) -> bool,
        cached: impl Fn(&ObjectRef<K>) -> Option<K>,
    ) -> Vec<Out<K>> {
        let gone: Vec<ObjectRef<K>> = self
            .owner
            .iter()
            .filter(|(key, owner)| which(key, **owner))
            .map(|(key, _)| key.clone())
            .collect();
        gone.into_iter()
            .filter_map(|key| {
                self.owner.remove(&key);
                cached(&key).map(|object| Out::Event(Event::Delete(object)))
            })
            .collect()
    }
}

/// An object's key, without the resource version and uid `ObjectRef::from_obj` keeps (they
/// take no part in comparing keys, and a key is kept per cached object).
fn key_of<K: kube::Resource<DynamicType = ()>>(object: &K) -> ObjectRef<K> {
    let meta = object.meta();
    let key = ObjectRef::new(meta.name.as_deref().unwrap_or_default());
    match meta.namespace.as_deref() {
        Some(namespace) => key.within(namespace),
        None => key,
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::ConfigMap;

    use super::*;

    fn cm(name: &str) -> ConfigMap {
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some(name.to_owned());
        cm.metadata.namespace = Some("ns".to_owned());
        cm
    }

    /// What the outputs say, in short: `+name`, `-name`, `covered N`.
    fn said(out: &[Out<ConfigMap>]) -> Vec<String> {
        out.iter()
            .map(|o| match o {
                Out::Event(Event::Apply(c)) => {
                    format!("+{}", c.metadata.name.clone().unwrap_or_default())
                }
                Out::Event(Event::Delete(c)) => {
                    format!("-{}", c.metadata.name.clone().unwrap_or_default())
                }
                Out::Event(other) => format!("{other:?}"),
                Out::Covered(shard) => format!("covered {shard}"),
            })
            .collect()
    }

    fn any(key: &ObjectRef<ConfigMap>) -> Option<ConfigMap> {
        Some(cm(&key.name))
    }

    #[test]
    fn watches_merge_into_applies_and_deletes() {
        use Source::{Shard, Unlabelled};
        let mut merge = Merge::<ConfigMap>::default();
        // (source, event, what the cache is told)
        let steps: Vec<(Source, Event<ConfigMap>, Vec<&str>)> = vec![
            (Shard(1), Event::Init, vec![]),
            (Shard(1), Event::InitApply(cm("a")), vec!["+a"]),
            (Shard(1), Event::InitDone, vec![]),
            (Unlabelled, Event::Init, vec![]),
            (Unlabelled, Event::InitApply(cm("old")), vec!["+old"]),
            (Unlabelled, Event::InitDone, vec!["covered 1"]),
            // "old" is relabelled into shard 1: applied there first, then deleted from the
            // unlabelled watch; it stays.
            (Shard(1), Event::Apply(cm("old")), vec!["+old"]),
            (Unlabelled, Event::Delete(cm("old")), vec![]),
            (Shard(1), Event::Delete(cm("a")), vec!["-a"]),
            // A relist of shard 1 that no longer has "old": it goes.
            (Shard(1), Event::Init, vec![]),
            (Shard(1), Event::InitApply(cm("b")), vec!["+b"]),
            (Shard(1), Event::InitDone, vec!["-old", "covered 1"]),
            // A shard listed after the unlabelled objects is covered at once.
            (Shard(2), Event::Init, vec![]),
            (Shard(2), Event::InitApply(cm("c")), vec!["+c"]),
            (Shard(2), Event::InitDone, vec!["covered 2"]),
        ];
        for (i, (source, event, want)) in steps.into_iter().enumerate() {
            let out = merge.on_event(source, event, any);
            assert_eq!(said(&out), want, "step {i}");
        }
        let mut released = said(&merge.on_release(1, any));
        released.sort();
        assert_eq!(released, ["-b"], "shard 1's objects leave");
        assert!(said(&merge.on_release(1, any)).is_empty(), "only once");
        assert_eq!(
            said(&merge.on_event(Shard(2), Event::Delete(cm("c")), any)),
            ["-c"]
        );
    }

    #[test]
    fn a_delete_before_the_apply_elsewhere_leaves_the_object_to_its_new_watch() {
        use Source::{Shard, Unlabelled};
        let mut merge = Merge::<ConfigMap>::default();
        assert_eq!(
            said(&merge.on_event(Unlabelled, Event::Apply(cm("x")), any)),
            ["+x"]
        );
        assert_eq!(
            said(&merge.on_event(Unlabelled, Event::Delete(cm("x")), any)),
            ["-x"]
        );
        assert_eq!(
            said(&merge.on_event(Shard(0), Event::Apply(cm("x")), any)),
            ["+x"]
        );
        assert!(said(&merge.on_release(3, any)).is_empty(), "not its shard");
    }

    #[test]
    fn a_shard_taken_while_the_unlabelled_objects_are_listed_again_waits_for_that_list() {
        use Source::{Shard, Unlabelled};
        let mut merge = Merge::<ConfigMap>::default();
        let steps: Vec<(Source, Event<ConfigMap>, Vec<&str>)> = vec![
            (Unlabelled, Event::Init, vec![]),
            (Unlabelled, Event::InitApply(cm("mine")), vec!["+mine"]),
            (
                Unlabelled,
                Event::InitApply(cm("released")),
                vec!["+released"],
            ),
            (Unlabelled, Event::InitDone, vec![]),
            (Shard(1), Event::Init, vec![]),
            (Shard(1), Event::InitDone, vec!["covered 1"]),
        ];
        for (i, (source, event, want)) in steps.into_iter().enumerate() {
            assert_eq!(said(&merge.on_event(source, event, any)), want, "step {i}");
        }
        // Shard 2 is taken: the unlabelled objects are listed again, keeping the held shards'.
        merge.relist_unlabelled();
        let steps: Vec<(Source, Event<ConfigMap>, Vec<&str>)> = vec![
            (Shard(2), Event::Init, vec![]),
            (
                Shard(2),
                Event::InitApply(cm("labelled")),
                vec!["+labelled"],
            ),
            (Shard(2), Event::InitDone, vec![]),
            (Unlabelled, Event::Init, vec![]),
            (Unlabelled, Event::InitApply(cm("mine")), vec!["+mine"]),
            (Unlabelled, Event::InitApply(cm("new")), vec!["+new"]),
            (
                Unlabelled,
                Event::InitDone,
                vec!["-released", "covered 1", "covered 2"],
            ),
        ];
        for (i, (source, event, want)) in steps.into_iter().enumerate() {
            assert_eq!(said(&merge.on_event(source, event, any)), want, "step {i}");
        }
    }
}
