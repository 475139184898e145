//! Labels as the caches keep them: the values of the few labels their readers read, out of
//! the metadata.
//!
//! Metadata holds labels in a `BTreeMap`, and even a handful of them costs a B-tree node of
//! about 540 bytes besides a string per key and per value. A cached BundleDeployment keeps
//! five or six of them (the Bundle work's in a `Deployed`, the Cluster roll-ups' in a
//! `Placement`). [`KeptLabels`] keeps only the values, in the order of the reader's
//! `'static` list of keys: 16 bytes per label, the value shared ([`crate::shared`]).

use std::sync::Arc;

use crate::shared::shared;

/// The values of some labels, in the order of a reader's list of keys (see the module's
/// doc).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KeptLabels {
    keys: &'static [&'static str],
    values: Box<[Option<Arc<str>>]>,
}

impl KeptLabels {
    /// Keeps the value `value` gives for each of `keys`.
    pub fn of<'a>(keys: &'static [&'static str], value: impl Fn(&str) -> Option<&'a str>) -> Self {
        Self {
            keys,
            values: keys.iter().map(|key| value(key).map(shared)).collect(),
        }
    }

    /// The value of label `key`, if it is kept.
    pub fn get(&self, key: &str) -> Option<&str> {
        let index = self.keys.iter().position(|kept| *kept == key)?;
        self.values[index].as_deref()
    }

    /// The keys that have a value, in the order they were listed.
    pub fn keys(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.keys
            .iter()
            .zip(&self.values)
            .filter(|(_, value)| value.is_some())
            .map(|(key, _)| *key)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn only_the_listed_labels_with_a_value_are_kept() {
        let labels = BTreeMap::from([
            ("b".to_owned(), "2".to_owned()),
            ("a".to_owned(), "1".to_owned()),
            ("other".to_owned(), "x".to_owned()),
        ]);
        let kept = KeptLabels::of(&["b", "a", "c"], |key| labels.get(key).map(String::as_str));
        assert_eq!(kept.keys().collect::<Vec<_>>(), ["b", "a"]);
        assert_eq!((kept.get("a"), kept.get("b")), (Some("1"), Some("2")));
        assert_eq!((kept.get("c"), kept.get("other")), (None, None));
        assert_eq!(KeptLabels::default().get("a"), None);
    }
}
