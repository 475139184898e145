//! Writes the cache does not show yet (kube-controller-manager's "expectations"). A
//! reconcile plans from a watch cache, which lags the writes it just made, the more so under
//! load; a second reconcile right after the first would create again what the first created
//! (a conflict, then an apply: two more writes each) unless it remembers. So each write's
//! content hash is kept, with the resourceVersion the API server gave it, until the cache
//! shows that hash or a resourceVersion at least as new (someone wrote after it: the cache is
//! trusted again, and a write someone undid is redone).
//!
//! resourceVersions are comparable as integers since Kubernetes 1.35 (KEP-5504), so a cache
//! holding the object at an older version is known to lag however long it takes: its writes
//! stay expected, where a timeout would have written them again while the watch caught up
//! (after the API server closed it as too slow and it listed everything again). Only a
//! write whose object the cache does not hold, or whose versions cannot be compared, is
//! trusted to the cache again after [`TTL`] (created, then deleted before the cache saw it).

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long a write is expected when the cache cannot say whether it lags (it does not hold
/// the object, or the resourceVersions are not comparable): after that the cache is trusted.
pub const TTL: Duration = Duration::from_secs(60);

/// How long any write is remembered at most, so that the writes of objects no reconcile
/// asks about again (their Bundle is gone) are forgotten.
pub const MAX_AGE: Duration = Duration::from_secs(600);

/// One write made: the content hash written, the resourceVersion it got, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Write {
    hash: String,
    version: Option<u128>,
    at: Instant,
}

/// What the cache holds of a key: the content hash it shows and its resourceVersion.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Seen<'a> {
    pub hash: Option<&'a str>,
    pub resource_version: Option<&'a str>,
}

/// Whether a write is still expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// The cache shows the write's content.
    Shown,
    /// The cache holds a resourceVersion at least as new: a later write (someone else's).
    Superseded,
    /// The cache lags the write.
    Pending,
    /// The cache cannot be compared with the write, and the TTL is over: trust it.
    Expired,
}

/// The verdict on `write` given what the cache holds of its key (`None`: not the object).
fn judge(write: &Write, seen: Option<Seen<'_>>, now: Instant) -> Verdict {
    let seen = seen.unwrap_or_default();
    if seen.hash == Some(write.hash.as_str()) {
        return Verdict::Shown;
    }
    match (seen.resource_version.and_then(comparable), write.version) {
        (Some(cached), Some(written)) if cached >= written => Verdict::Superseded,
        (Some(_), Some(_)) => Verdict::Pending,
        _ if expired(write.at, now, TTL) => Verdict::Expired,
        _ => Verdict::Pending,
    }
}

/// A resourceVersion as the integer it is (KEP-5504); `None` for any other string.
fn comparable(version: &str) -> Option<u128> {
    version.parse().ok()
}

/// The writes made, by key.
#[derive(Debug)]
pub struct Expectations<K> {
    written: Mutex<HashMap<K, Write>>,
}

impl<K> Default for Expectations<K> {
    fn default() -> Self {
        Self {
            written: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Hash + Eq + Ord + Clone> Expectations<K> {
    /// `key` was written with content `hash` at `now`, and got `resource_version`.
    pub fn written(&self, key: K, hash: String, resource_version: Option<&str>, now: Instant) {
        let version = resource_version.and_then(comparable);
        self.lock().insert(
            key,
            Write {
                hash,
                version,
                at: now,
            },
        );
    }

    /// `key` was deleted: nothing of it is expected any more.
    pub fn deleted(&self, key: &K) {
        self.lock().remove(key);
    }

    /// Of `keys`, those written with a content the cache does not show yet (`cached`: what
    /// the cache holds of a key), with the hash written. Writes the cache shows or has
    /// superseded, those it cannot be compared with after [`TTL`], and every write older
    /// than [`MAX_AGE`], are forgotten.
    pub fn pending<'a, 'c>(
        &self,
        keys: impl IntoIterator<Item = &'a K>,
        cached: impl Fn(&K) -> Option<Seen<'c>>,
        now: Instant,
    ) -> BTreeMap<K, String>
    where
        K: 'a,
    {
        let mut written = self.lock();
        written.retain(|_, write| !expired(write.at, now, MAX_AGE));
        let mut pending = BTreeMap::new();
        for key in keys {
            let Some(write) = written.get(key) else {
                continue;
            };
            if judge(write, cached(key), now) == Verdict::Pending {
                pending.insert(key.clone(), write.hash.clone());
            } else {
                written.remove(key);
            }
        }
        pending
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Write>> {
        self.written.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Whether something that happened `at` is older than `age` at `now`.
fn expired(at: Instant, now: Instant, age: Duration) -> bool {
    now.saturating_duration_since(at) >= age
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(hash: &str, version: Option<u128>, at: Instant) -> Write {
        Write {
            hash: hash.to_owned(),
            version,
            at,
        }
    }

    fn seen<'a>(hash: Option<&'a str>, resource_version: Option<&'a str>) -> Option<Seen<'a>> {
        Some(Seen {
            hash,
            resource_version,
        })
    }

    #[test]
    fn the_verdict_on_a_write() {
        let at = Instant::now();
        let (young, old) = (at, at + TTL);
        let cases = [
            (
                "the cache shows it",
                Some(10),
                seen(Some("h1"), Some("9")),
                old,
                Verdict::Shown,
            ),
            (
                "shown, not comparable",
                None,
                seen(Some("h1"), None),
                young,
                Verdict::Shown,
            ),
            (
                "the cache lags",
                Some(10),
                seen(Some("h0"), Some("9")),
                young,
                Verdict::Pending,
            ),
            (
                "it lags past the TTL",
                Some(10),
                seen(Some("h0"), Some("9")),
                old + TTL,
                Verdict::Pending,
            ),
            (
                "lagging, never stamped",
                Some(10),
                seen(None, Some("9")),
                old,
                Verdict::Pending,
            ),
            (
                "someone wrote after",
                Some(10),
                seen(Some("h2"), Some("11")),
                young,
                Verdict::Superseded,
            ),
            (
                "same version, other content",
                Some(10),
                seen(Some("h0"), Some("10")),
                young,
                Verdict::Superseded,
            ),
            (
                "not in the cache yet",
                Some(10),
                None,
                young,
                Verdict::Pending,
            ),
            (
                "not in the cache, TTL over",
                Some(10),
                None,
                old,
                Verdict::Expired,
            ),
            (
                "cache version not an integer",
                Some(10),
                seen(Some("h0"), Some("abc")),
                young,
                Verdict::Pending,
            ),
            (
                "not comparable, TTL over",
                Some(10),
                seen(Some("h0"), Some("abc")),
                old,
                Verdict::Expired,
            ),
            (
                "written without a version, TTL over",
                None,
                seen(Some("h0"), Some("9")),
                old,
                Verdict::Expired,
            ),
        ];
        for (case, version, cached, now, expected) in cases {
            let verdict = judge(&write("h1", version, at), cached, now);
            assert_eq!(verdict, expected, "{case}");
        }
    }

    #[test]
    fn resource_versions_compare_as_integers() {
        assert!(comparable("10") > comparable("9"));
        assert_eq!(comparable("18446744073709551616"), Some(1 << 64));
        assert_eq!(comparable(""), None);
        assert_eq!(comparable("-1"), None);
    }

    #[test]
    fn pending_writes_are_kept_and_the_rest_forgotten() {
        let t0 = Instant::now();
        let now = t0 + TTL;
        let expectations = Expectations::default();
        let key = |k: &str| k.to_owned();
        expectations.written(key("ancient"), "h1".to_owned(), Some("5"), t0);
        for k in ["caught-up", "lagging", "superseded", "absent", "deleted"] {
            expectations.written(key(k), "h1".to_owned(), Some("10"), now);
        }
        expectations.deleted(&key("deleted"));
        let cached = |k: &String| match k.as_str() {
            "caught-up" => seen(Some("h1"), Some("10")),
            "lagging" | "ancient" => seen(Some("h0"), Some("4")),
            "superseded" => seen(Some("h2"), Some("12")),
            _ => None,
        };
        let keys: Vec<String> = [
            "caught-up",
            "lagging",
            "superseded",
            "absent",
            "ancient",
            "deleted",
            "never",
        ]
        .map(key)
        .to_vec();
        let pending = expectations.pending(&keys, cached, now);
        let expected: BTreeMap<String, String> =
            [("absent", "h1"), ("ancient", "h1"), ("lagging", "h1")]
                .map(|(k, h)| (key(k), h.to_owned()))
                .into();
        assert_eq!(pending, expected);
        assert_eq!(expectations.lock().len(), 3);
        // A TTL later the absent one is trusted to the cache; the lagging ones stay until
        // MAX_AGE.
        let later = expectations.pending(&keys, cached, now + TTL);
        let lagging: Vec<&str> = later.keys().map(String::as_str).collect();
        assert_eq!(lagging, ["ancient", "lagging"]);
        let much_later = expectations.pending(&keys, cached, t0 + MAX_AGE);
        assert_eq!(much_later.keys().collect::<Vec<_>>(), [&key("lagging")]);
        assert!(
            expectations
                .pending(&keys, cached, now + MAX_AGE)
                .is_empty()
        );
        assert!(expectations.lock().is_empty());
    }
}
