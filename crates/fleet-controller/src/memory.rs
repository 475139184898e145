//! What the controller remembers between reconciles of one term: shortcuts that save API
//! requests or memory, never the truth (that is the API server's), and gone with the term.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// An object's (namespace, name).
pub type Key = (String, String);

/// The term's memory.
#[derive(Debug, Default)]
pub struct Memory {
    /// Contents known to exist (named by the hash of what they hold: they never change).
    contents: Mutex<HashSet<String>>,
    /// Helm repository credentials copied this term, with the hash of their data.
    helm_secrets: Mutex<HashMap<Key, String>>,
    /// Bundles whose targets cannot be evaluated, and why (for their status).
    targeting_errors: Mutex<HashMap<Key, String>>,
    /// BundleDeployment creation bursts, and the Cluster roll-ups waiting for them to end.
    pub bursts: crate::bursts::Bursts,
    /// BundleDeployments written that the cache may not show yet.
    pub written: fleet_runtime::expectations::Expectations<Key>,
    /// The clusters Bundles may target, while reconciles use them.
    pub candidates: crate::candidates::Shared,
}

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Memory {
    /// Whether the Content `name` is known to exist.
    pub fn knows_content(&self, name: &str) -> bool {
        locked(&self.contents).contains(name)
    }

    /// The Content `name` exists.
    pub fn content_exists(&self, name: String) {
        locked(&self.contents).insert(name);
    }

    /// The hash of the credentials last copied to `key`, if this term copied them.
    pub fn helm_secret(&self, key: &Key) -> Option<String> {
        locked(&self.helm_secrets).get(key).cloned()
    }

    /// Credentials with `hash` were copied to `key`; `None`: the copy was deleted.
    pub fn set_helm_secret(&self, key: Key, hash: Option<String>) {
        let mut written = locked(&self.helm_secrets);
        match hash {
            Some(hash) => written.insert(key, hash),
            None => written.remove(&key),
        };
    }

    /// Why the Bundle `key` cannot be targeted, if it cannot.
    pub fn targeting_error(&self, key: &Key) -> Option<String> {
        locked(&self.targeting_errors).get(key).cloned()
    }

    /// The Bundle `key` cannot be targeted (`Some(why)`), or can (`None`).
    pub fn set_targeting_error(&self, key: Key, error: Option<String>) {
        let mut errors = locked(&self.targeting_errors);
        match error {
            Some(error) => errors.insert(key, error),
            None => errors.remove(&key),
        };
    }
}
