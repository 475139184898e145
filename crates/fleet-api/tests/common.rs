//! Shared by the fleet-api tests: the fixtures and Go's `omitempty` normalisation.

use serde_json::Value;

/// (file, kind) of every Kubernetes-object fixture.
pub const OBJECT_FIXTURES: &[(&str, &str)] = &[
    ("gitrepo.yaml", "GitRepo"),
    ("helmop.yaml", "HelmOp"),
    ("clustergroup.yaml", "ClusterGroup"),
    ("clusterregistrationtoken.yaml", "ClusterRegistrationToken"),
    ("cluster.yaml", "Cluster"),
    ("bundle.yaml", "Bundle"),
    ("gitreporestriction.yaml", "GitRepoRestriction"),
    ("bundlenamespacemapping.yaml", "BundleNamespaceMapping"),
];

pub fn fixture(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn fixture_value(name: &str) -> Value {
    serde_saphyr::from_str(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Drops what Go's `omitempty` drops (false, "", null, empty lists and maps), which Fleet's
/// types and these share, so that `enabled: false` and an absent field compare equal.
pub fn omit_empty(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), omit_empty(v)))
                .filter(|(_, v)| !is_empty(v))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(omit_empty).collect()),
        other => other.clone(),
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null | Value::Bool(false) => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Number(_) | Value::Bool(true) => false,
    }
}
