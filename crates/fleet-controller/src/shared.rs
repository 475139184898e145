//! Strings many cached objects hold the same of, kept once per process.
//!
//! A Bundle's 1,000 BundleDeployments carry the same options, deployment ids, Bundle and
//! GitRepo names; a Cluster's name and namespace label the BundleDeployments of every Bundle
//! placed on it. The caches keep each such string once ([`shared`]), and a string no object
//! holds any more is dropped when the table of them has doubled since it was last swept.

use std::collections::HashSet;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use serde::{Deserialize, Deserializer};

/// The strings in use in this process, each once.
static SHARED: LazyLock<Mutex<Table>> = LazyLock::new(Mutex::default);

/// The shared copy of `string`.
pub fn shared(string: &str) -> Arc<str> {
    SHARED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .share(string)
}

/// Deserializes an optional string as its shared copy (for `#[serde(deserialize_with)]`).
pub fn optional<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Arc<str>>, D::Error> {
    let string = Option::<std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
    Ok(string.as_deref().map(shared))
}

/// Distinct strings, and how many there were after the last sweep.
#[derive(Debug, Default)]
struct Table {
    strings: HashSet<Arc<str>>,
    swept: usize,
}

/// The table is not swept below this many strings.
const SWEEP_FROM: usize = 64;

impl Table {
    fn share(&mut self, string: &str) -> Arc<str> {
        if let Some(shared) = self.strings.get(string) {
            return shared.clone();
        }
        if self.strings.len() >= (2 * self.swept).max(SWEEP_FROM) {
            // Sweeping only once the table has doubled costs O(1) per string added, and
            // the strings nobody holds stay fewer than twice those held at the last
            // sweep, plus SWEEP_FROM.
            self.strings.retain(|s| Arc::strong_count(s) > 1);
            self.swept = self.strings.len();
        }
        let shared: Arc<str> = Arc::from(string);
        self.strings.insert(shared.clone());
        shared
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_strings_share_one_copy() {
        let (a, b) = (shared("fleet-default"), shared("fleet-default"));
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &shared("fleet-local")));
        #[derive(Deserialize)]
        struct Spec {
            #[serde(default, deserialize_with = "optional")]
            id: Option<Arc<str>>,
        }
        let read = |json| serde_json::from_str::<Spec>(json).expect("spec").id;
        let (c, d) = (read(r#"{"id": "s-1:o"}"#), read(r#"{"id": "s-1:o"}"#));
        assert!(c.zip(d).is_some_and(|(c, d)| Arc::ptr_eq(&c, &d)));
        assert_eq!(read(r#"{"id": null}"#), None);
        assert_eq!(read("{}"), None);
    }

    #[test]
    fn strings_nobody_holds_are_swept() {
        let mut table = Table::default();
        let held: Vec<Arc<str>> = (0..SWEEP_FROM)
            .map(|i| table.share(&i.to_string()))
            .collect();
        for i in 0..10 * SWEEP_FROM {
            drop(table.share(&format!("dropped-{i}")));
        }
        assert!(
            table.strings.len() <= 2 * SWEEP_FROM + 1,
            "{}",
            table.strings.len()
        );
        for (i, held) in held.iter().enumerate() {
            assert!(
                Arc::ptr_eq(held, &table.share(&i.to_string())),
                "kept while held"
            );
        }
    }
}
