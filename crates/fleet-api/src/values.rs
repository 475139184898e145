//! Helm values as Fleet merges them (`data.MergeMaps`): maps merge key by key, anything else
//! (lists, scalars) is replaced by the overlay's.

use serde_json::Value;

/// Deep merge of JSON objects; anything else in `overlay` replaces.
pub fn merge_json(base: &mut Value, overlay: Value) {
    match (base, overlay) {
        (Value::Object(base), Value::Object(overlay)) => {
            for (key, value) in overlay {
                match base.get_mut(&key) {
                    Some(existing) => merge_json(existing, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (base, overlay) => *base = overlay,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn maps_merge_and_everything_else_is_replaced() {
        let cases = [
            (json!({"a": 1}), json!({"b": 2}), json!({"a": 1, "b": 2})),
            (
                json!({"a": {"x": 1, "y": 1}}),
                json!({"a": {"y": 2}}),
                json!({"a": {"x": 1, "y": 2}}),
            ),
            (json!({"a": [1, 2]}), json!({"a": [3]}), json!({"a": [3]})),
            (json!({"a": {"x": 1}}), json!({"a": "s"}), json!({"a": "s"})),
            (json!({"a": 1}), json!({"a": null}), json!({"a": null})),
        ];
        for (base, overlay, want) in cases {
            let mut merged = base.clone();
            merge_json(&mut merged, overlay.clone());
            assert_eq!(merged, want, "{base} + {overlay}");
        }
    }
}
