//! Drift: how a live object differs from what the release wants. Every field the desired
//! object sets (outside `status` and server-managed metadata) must hold the same value live;
//! fields the server or controllers add are not drift. The difference is reported as the JSON
//! merge patch that would put the desired values back (Fleet's `modifiedStatus[].patch`).

use fleet_api::{ComparePatch, ResourceRef};
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
    drift_ignoring(desired, live, &[])
}

/// [`drift`], leaving out the fields at `ignored` (JSON pointers, from `diff.comparePatches`).
pub fn drift_ignoring(desired: &Value, live: &Value, ignored: &[String]) -> Option<Value> {
    let mut desired = desired.clone();
    let mut live = live.clone();
    for pointer in ignored {
        remove_pointer(&mut desired, pointer);
        remove_pointer(&mut live, pointer);
    }
    if let Some(object) = desired.as_object_mut() {
        object.remove("status");
        if let Some(Value::Object(metadata)) = object.get_mut("metadata") {
            for key in SERVER_METADATA {
                metadata.remove(key);
            }
        }
    }
    difference(&desired, &live)
}

/// The JSON pointers `patches` (a bundle's `diff.comparePatches`) leave out of the comparison
/// of `object`: `jsonPointers` and the paths of `remove` operations of every patch whose set
/// fields (apiVersion, kind, name, namespace) match the object's.
pub fn ignored_pointers(patches: &[ComparePatch], object: &ResourceRef) -> Vec<String> {
    let matches = |want: &Option<String>, have: &Option<String>| {
        want.as_deref()
            .is_none_or(|w| w.is_empty() || Some(w) == have.as_deref())
    };
    patches
        .iter()
        .filter(|p| {
            let r = &p.resource;
            matches(&r.api_version, &object.api_version)
                && matches(&r.kind, &object.kind)
                && matches(&r.name, &object.name)
                && matches(&r.namespace, &object.namespace)
        })
        .flat_map(|p| {
            let removed = p
                .operations
                .iter()
                .filter(|op| op.op.as_deref() == Some("remove"))
                .filter_map(|op| op.path.clone());
            p.json_pointers.iter().cloned().chain(removed)
        })
        .collect()
}

/// Removes the value at a JSON pointer (RFC 6901), if there is one.
fn remove_pointer(value: &mut Value, pointer: &str) {
    let Some((parent, last)) = pointer.rsplit_once('/') else {
        return;
    };
    let last = last.replace("~1", "/").replace("~0", "~");
    match value.pointer_mut(parent) {
        Some(Value::Object(map)) => {
            map.remove(&last);
        }
        Some(Value::Array(items)) => {
            if let Ok(index) = last.parse::<usize>()
                && index < items.len()
            {
                items.remove(index);
            }
        }
        _ => {}
    }
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
        // Lists: element by element, each allowed fields the server added (a container's
        // defaulted `imagePullPolicy`, say); a merge patch replaces a list as a whole.
        (Value::Array(want), Value::Array(have)) => {
            let same = want.len() == have.len()
                && want
                    .iter()
                    .zip(have)
                    .all(|(w, h)| difference(w, h).is_none());
            (!same).then(|| desired.clone())
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
    fn compare_patches_leave_fields_out_for_matching_objects_only() {
        let patches: Vec<ComparePatch> = serde_json::from_value(json!([
            {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
             "operations": [{"op": "remove", "path": "/spec/replicas"}]},
            {"kind": "Service", "jsonPointers": ["/metadata/annotations/a~1b"]},
        ]))
        .expect("patches");
        let web = ResourceRef {
            api_version: Some("apps/v1".to_owned()),
            kind: Some("Deployment".to_owned()),
            name: Some("web".to_owned()),
            namespace: Some("apps".to_owned()),
        };
        let ignored = ignored_pointers(&patches, &web);
        assert_eq!(ignored, ["/spec/replicas"]);
        let desired = json!({"spec": {"replicas": 2, "paused": false}});
        let scaled = json!({"spec": {"replicas": 7, "paused": false}});
        assert_eq!(drift_ignoring(&desired, &scaled, &ignored), None);
        let other = ResourceRef {
            name: Some("api".to_owned()),
            ..web
        };
        assert!(ignored_pointers(&patches, &other).is_empty());
        let service = json!({"metadata": {"annotations": {"a/b": "1"}}});
        let edited = json!({"metadata": {"annotations": {"a/b": "2"}}});
        let svc = ResourceRef {
            kind: Some("Service".to_owned()),
            ..ResourceRef::default()
        };
        assert_eq!(
            drift_ignoring(&service, &edited, &ignored_pointers(&patches, &svc)),
            None
        );
    }

    #[test]
    fn list_elements_may_carry_defaults_but_not_other_values_or_lengths() {
        let desired = json!({"spec": {"containers": [{"name": "web", "image": "nginx:1"}]}});
        let defaulted = json!({"spec": {"containers": [{"name": "web", "image": "nginx:1",
            "imagePullPolicy": "IfNotPresent", "terminationMessagePath": "/dev/termination-log"}]}});
        assert_eq!(drift(&desired, &defaulted), None);
        let changed = json!({"spec": {"containers": [{"name": "web", "image": "nginx:2"}]}});
        assert_eq!(drift(&desired, &changed), Some(desired.clone()));
        let added = json!({"spec": {"containers": [{"name": "web", "image": "nginx:1"}, {"name": "sidecar"}]}});
        assert_eq!(drift(&desired, &added), Some(desired));
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
