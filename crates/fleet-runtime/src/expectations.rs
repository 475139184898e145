//! Writes the cache does not show yet (kube-controller-manager's "expectations"). A
//! reconcile plans from a watch cache, which lags the writes it just made, the more so under
//! load; a second reconcile right after the first would create again what the first created
//! (a conflict, then an apply: two more writes each) unless it remembers. So each write's
//! content hash is kept until the cache shows that hash, or for at most a TTL (after which
//! the cache is trusted again: a write someone undid is redone then).

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long a write is remembered at most: a cache lagging longer is trusted anyway.
pub const TTL: Duration = Duration::from_secs(60);

/// The writes made, by key: their content hash and when.
#[derive(Debug)]
pub struct Expectations<K> {
    written: Mutex<HashMap<K, (String, Instant)>>,
}

impl<K> Default for Expectations<K> {
    fn default() -> Self {
        Self {
            written: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Hash + Eq + Ord + Clone> Expectations<K> {
    /// `key` was written with content `hash` at `now`.
    pub fn written(&self, key: K, hash: String, now: Instant) {
        self.lock().insert(key, (hash, now));
    }

    /// `key` was deleted: nothing of it is expected any more.
    pub fn deleted(&self, key: &K) {
        self.lock().remove(key);
    }

    /// Of `keys`, those written with a content the cache does not show yet (`cached`: the
    /// hash the cache holds for a key), with the hash written. Writes the cache shows, and
    /// every write older than [`TTL`], are forgotten.
    pub fn pending<'a>(
        &self,
        keys: impl IntoIterator<Item = &'a K>,
        cached: impl Fn(&K) -> Option<String>,
        now: Instant,
    ) -> BTreeMap<K, String>
    where
        K: 'a,
    {
        let mut written = self.lock();
        written.retain(|_, (_, at)| !expired(*at, now));
        let mut pending = BTreeMap::new();
        for key in keys {
            let Some((hash, _)) = written.get(key) else {
                continue;
            };
            if cached(key).as_deref() == Some(hash.as_str()) {
                written.remove(key);
            } else {
                pending.insert(key.clone(), hash.clone());
            }
        }
        pending
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, (String, Instant)>> {
        self.written.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Whether a write made `at` is too old to expect at `now`.
fn expired(at: Instant, now: Instant) -> bool {
    now.saturating_duration_since(at) >= TTL
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_expected_until_the_cache_shows_them_or_they_expire() {
        let t0 = Instant::now();
        let now = t0 + TTL;
        let expectations = Expectations::default();
        expectations.written("old".to_owned(), "h1".to_owned(), t0);
        for key in ["caught-up", "lagging", "other-content", "deleted"] {
            expectations.written(key.to_owned(), "h1".to_owned(), now);
        }
        expectations.deleted(&"deleted".to_owned());
        let cached = |key: &String| match key.as_str() {
            "caught-up" => Some("h1".to_owned()),
            // The cache still has the content before the write (or someone else's).
            "other-content" => Some("h0".to_owned()),
            _ => None,
        };
        let keys: Vec<String> = [
            "caught-up",
            "lagging",
            "other-content",
            "old",
            "deleted",
            "never",
        ]
        .map(str::to_owned)
        .to_vec();
        let pending = expectations.pending(&keys, cached, now);
        let expected: BTreeMap<String, String> = [("lagging", "h1"), ("other-content", "h1")]
            .map(|(k, h)| (k.to_owned(), h.to_owned()))
            .into();
        assert_eq!(pending, expected);
        // What the cache showed is forgotten; the rest expires with the TTL.
        assert_eq!(expectations.lock().len(), 2);
        let later = expectations.pending(&keys, cached, now + TTL);
        assert!(later.is_empty(), "{later:?}");
        assert!(expectations.lock().is_empty());
    }
}
