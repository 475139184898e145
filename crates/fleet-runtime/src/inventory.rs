//! Making a set of objects exactly a desired set: what to create, what to update, what is
//! unchanged and what to prune, decided from content hashes (pure). gitjob's and helmops'
//! Bundles (the Bundle store) and the controller's BundleDeployments are written by
//! this one plan, so that "skip what did not change, prune what is no longer wanted" means
//! the same everywhere.
//!
//! Each written object carries the hash of what was written in the annotation
//! [`CONTENT_HASH`]; an object whose hash is the desired one is not written again.

use std::collections::BTreeMap;

use fleet_api::labels::CONTENT_HASH;
use kube::api::ObjectMeta;

/// What to do to make the existing set the desired one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changes<K, T> {
    /// Wanted and missing.
    pub create: Vec<T>,
    /// Wanted, present with other content (or with no hash).
    pub update: Vec<T>,
    /// Wanted and present with the same content: nothing to write.
    pub unchanged: Vec<K>,
    /// Present and no longer wanted.
    pub prune: Vec<K>,
}

impl<K, T> Default for Changes<K, T> {
    fn default() -> Self {
        Self {
            create: Vec::new(),
            update: Vec::new(),
            unchanged: Vec::new(),
            prune: Vec::new(),
        }
    }
}

impl<K, T> Changes<K, T> {
    /// How many API writes the changes take.
    pub fn writes(&self) -> usize {
        self.create.len() + self.update.len() + self.prune.len()
    }
}

/// The changes that turn `existing` (key → the content hash it carries, if any) into
/// `desired` (key, content hash, object). Each desired object should already carry its hash
/// ([`stamp`]); a key desired twice counts once (the first).
pub fn plan<K, T>(
    desired: impl IntoIterator<Item = (K, String, T)>,
    existing: &BTreeMap<K, Option<String>>,
) -> Changes<K, T>
where
    K: Ord + Clone,
{
    let mut changes = Changes::default();
    let mut wanted = std::collections::BTreeSet::new();
    for (key, hash, object) in desired {
        if !wanted.insert(key.clone()) {
            continue;
        }
        match existing.get(&key) {
            Some(Some(old)) if *old == hash => changes.unchanged.push(key),
            Some(_) => changes.update.push(object),
            None => changes.create.push(object),
        }
    }
    changes.prune = existing
        .keys()
        .filter(|key| !wanted.contains(*key))
        .cloned()
        .collect();
    changes
}

/// The content hash an object carries, if any.
pub fn hash_of(meta: &ObjectMeta) -> Option<String> {
    meta.annotations.as_ref()?.get(CONTENT_HASH).cloned()
}

/// Records `hash` on the object as the hash of what is written.
pub fn stamp(meta: &mut ObjectMeta, hash: &str) {
    meta.annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(CONTENT_HASH.to_owned(), hash.to_owned());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn existing(
        entries: &[(&'static str, Option<&str>)],
    ) -> BTreeMap<&'static str, Option<String>> {
        entries
            .iter()
            .map(|(key, hash)| (*key, hash.map(str::to_owned)))
            .collect()
    }

    #[test]
    fn every_branch_of_the_plan() {
        // (desired (key, hash), existing, create, update, unchanged, prune)
        type Case = (
            Vec<(&'static str, &'static str)>,
            Vec<(&'static str, Option<&'static str>)>,
            [Vec<&'static str>; 4],
        );
        let cases: Vec<Case> = vec![
            (vec![], vec![], [vec![], vec![], vec![], vec![]]),
            (
                vec![("a", "1")],
                vec![],
                [vec!["a"], vec![], vec![], vec![]],
            ),
            (
                vec![("a", "1")],
                vec![("a", Some("1"))],
                [vec![], vec![], vec!["a"], vec![]],
            ),
            (
                vec![("a", "2")],
                vec![("a", Some("1"))],
                [vec![], vec!["a"], vec![], vec![]],
            ),
            // Written by someone else, without a hash: taken over.
            (
                vec![("a", "1")],
                vec![("a", None)],
                [vec![], vec!["a"], vec![], vec![]],
            ),
            (
                vec![("b", "1")],
                vec![("a", Some("1")), ("c", None)],
                [vec!["b"], vec![], vec![], vec!["a", "c"]],
            ),
            // A key desired twice is written once.
            (
                vec![("a", "1"), ("a", "2")],
                vec![],
                [vec!["a"], vec![], vec![], vec![]],
            ),
        ];
        for (desired, present, [create, update, unchanged, prune]) in cases {
            let changes = plan(
                desired.iter().map(|(k, h)| (*k, (*h).to_owned(), *k)),
                &existing(&present),
            );
            let label = format!("{desired:?} over {present:?}");
            assert_eq!(changes.create, create, "create: {label}");
            assert_eq!(changes.update, update, "update: {label}");
            assert_eq!(changes.unchanged, unchanged, "unchanged: {label}");
            assert_eq!(changes.prune, prune, "prune: {label}");
            assert_eq!(changes.writes(), create.len() + update.len() + prune.len());
        }
    }

    #[test]
    fn a_stamped_hash_reads_back() {
        let mut meta = ObjectMeta::default();
        assert_eq!(hash_of(&meta), None);
        stamp(&mut meta, "abc");
        assert_eq!(hash_of(&meta).as_deref(), Some("abc"));
    }
}
