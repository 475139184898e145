//! Kubernetes Events for errors a user should act on (a malformed `fleet.yaml`, a repository
//! that refuses the credentials, a chart that does not install): `kubectl describe` and
//! `kubectl get events` show them beside the object, where users look first.
//!
//! - At most one Event per object and reason per [`Events::every`] (a minute by default): a
//!   reconcile retried every few seconds does not flood the namespace.
//! - Written through the reconcile's [`Writer`] (the claim is checked right before), as
//!   `events.k8s.io/v1` Events with the binary as reporting controller.
//! - An Event that cannot be written is logged and otherwise ignored: it never fails the
//!   reconcile whose error it reports (the status conditions carry the error too).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::{Api, Client, Resource, ResourceExt};

use crate::gate::Writer;

/// The Events one binary writes.
pub struct Events {
    client: Client,
    controller: String,
    every: Duration,
    last: Mutex<HashMap<(String, String), Instant>>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events")
            .field("controller", &self.controller)
            .field("every", &self.every)
            .finish_non_exhaustive()
    }
}

impl Events {
    /// Events reported by `controller` (e.g. `fleet.cattle.io/gitjob`), at most one per
    /// object and reason per minute.
    pub fn new(client: Client, controller: &str) -> Self {
        Self::every(client, controller, Duration::from_secs(60))
    }

    /// [`Events::new`] with another minimum interval per object and reason.
    pub fn every(client: Client, controller: &str, every: Duration) -> Self {
        Self {
            client,
            controller: controller.to_owned(),
            every,
            last: Mutex::default(),
        }
    }

    /// A `Warning` Event on `object`: `reason` (CamelCase, e.g. `SyncFailed`), what was being
    /// done (`action`, e.g. `Sync`) and the message for the user (`note`).
    pub async fn warn<K>(&self, writer: &Writer, object: &K, reason: &str, action: &str, note: &str)
    where
        K: Resource<DynamicType = ()>,
    {
        let uid = object.uid().unwrap_or_default();
        if !self.due(&uid, reason, Instant::now()) {
            return;
        }
        let namespace = object.namespace().unwrap_or_else(|| "default".to_owned());
        let now = jiff::Timestamp::now();
        let event = Event {
            metadata: ObjectMeta {
                // As client-go names them: `<object>.<hex time>`.
                name: Some(format!("{}.{:x}", object.name_any(), now.as_nanosecond())),
                namespace: Some(namespace.clone()),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(now)),
            type_: Some("Warning".to_owned()),
            reason: Some(reason.to_owned()),
            action: Some(action.to_owned()),
            // The API server refuses notes over 1 kB.
            note: Some(truncate(note, 1000)),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(truncate(
                &format!("{}-{}", self.controller, writer.identity()),
                128,
            )),
            regarding: Some(ObjectReference {
                api_version: Some(K::api_version(&()).into_owned()),
                kind: Some(K::kind(&()).into_owned()),
                name: Some(object.name_any()),
                namespace: object.namespace(),
                uid: object.uid(),
                resource_version: object.resource_version(),
                ..ObjectReference::default()
            }),
            ..Event::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        if let Err(error) = writer.create(&api, &event).await {
            tracing::warn!(%error, reason, object = %object.name_any(), "could not record an Event");
        }
    }

    /// Whether an Event for (`uid`, `reason`) may be written at `now`; if so, records it.
    fn due(&self, uid: &str, reason: &str, now: Instant) -> bool {
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Entries older than the interval can go: memory stays bounded by the recent ones.
        last.retain(|_, at| now.saturating_duration_since(*at) < self.every);
        let key = (uid.to_owned(), reason.to_owned());
        if last.contains_key(&key) {
            return false;
        }
        last.insert(key, now);
        true
    }
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events() -> Events {
        // No request is made: `due` is pure bookkeeping.
        let config = kube::Config::new("http://127.0.0.1:1".parse().expect("url"));
        let client = Client::try_from(config).expect("client");
        Events::every(client, "test", Duration::from_secs(60))
    }

    #[tokio::test]
    async fn one_event_per_object_and_reason_per_interval() {
        let events = events();
        let t0 = Instant::now();
        let later = |secs| t0 + Duration::from_secs(secs);
        assert!(events.due("uid-a", "SyncFailed", t0));
        assert!(!events.due("uid-a", "SyncFailed", later(30)), "same minute");
        assert!(
            events.due("uid-a", "PollFailed", later(30)),
            "another reason"
        );
        assert!(
            events.due("uid-b", "SyncFailed", later(30)),
            "another object"
        );
        assert!(
            events.due("uid-a", "SyncFailed", later(61)),
            "a minute later"
        );
        assert_eq!(
            events.last.lock().expect("lock").len(),
            3,
            "the minute-old entry was dropped before the new one was recorded"
        );
    }

    #[test]
    fn notes_are_cut_at_a_character_boundary() {
        assert_eq!(truncate("abc", 10), "abc");
        assert_eq!(truncate("ééé", 3), "é");
    }
}
