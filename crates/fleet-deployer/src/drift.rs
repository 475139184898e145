//! Drift: how a live object differs from what the release wants. Every field the desired
//! object sets (outside `status` and server-managed metadata) must hold the same value live;
//! fields the server or controllers add are not drift. The difference is reported as the JSON
//! merge patch that would put the desired values back (Fleet's `modifiedStatus[].patch`).

use serde_json::{Map, Value};

/// Metadata the API server manages; never drift.
const SERVER_METADATA: [&str; 8] = [
    "creationTimestamp",
    "generation",
    "managedFields",
    "resourceVersion",
    "uid",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

/// The merge patch from `live` back to `desired`, `None` when nothing drifted.
pub fn drift(desired: &Value, live: &Value) -> Option<Value> {
    let mut desired = desired.clone();
    if let Some(object) = desired.as_object_mut() {
        object.remove("status");
        if let Some(Value::Object(metadata)) = object.get_mut("metadata") {
            for key in SERVER_METADATA {
                metadata.remove(key);
            }
        }
    }
    difference(&desired, live)
}

fn difference(desired: &Value, live: &Value) -> Option<Value> {
    match (desired, live) {
        (Value::Object(want), Value::Object(have)) => {
            let patch: Map<String, Value> = want
                .iter()
                .filter_map(|(key, value)| match have.get(key) {
                    Some(live) => difference(value, live).map(|d| (key.clone(), d)),
                    None if value.is_null() => None,
                    None => Some((key.clone(), value.clone())),
                })
                .collect();
            (!patch.is_empty()).then_some(Value::Object(patch))
        }
        (want, have) if numbers_equal(want, have) || want == have => None,
        (want, _) => Some(want.clone()),
    }
}

/// `1` and `1.0` are the same value once the API server has stored them.
fn numbers_equal(a: &Value, b: &Value) -> bool {
    matches!((a.as_f64(), b.as_f64()), (Some(x), Some(y)) if x == y)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn fields_added_by_the_server_are_not_drift() {
        let desired = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"a": "1"}}, "data": {"k": "v"}});
        let live = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "uid": "x", "resourceVersion": "9", "labels": {"a": "1", "added": "by-someone"}}, "data": {"k": "v"}});
        assert_eq!(drift(&desired, &live), None);
    }

    #[test]
    fn a_changed_or_removed_field_is_reported_as_the_patch_that_restores_it() {
        let desired = json!({"metadata": {"name": "d"}, "spec": {"replicas": 2, "template": {"image": "nginx:1"}}});
        let live = json!({"metadata": {"name": "d"}, "spec": {"replicas": 5, "template": {}}});
        assert_eq!(
            drift(&desired, &live),
            Some(json!({"spec": {"replicas": 2, "template": {"image": "nginx:1"}}}))
        );
    }
}
