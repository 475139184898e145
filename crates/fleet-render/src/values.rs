//! Per-cluster Helm values, as Fleet computes them before deploying: `${ }` expressions in
//! string values are replaced with the cluster's data, and `global.fleet.clusterLabels` holds
//! the cluster's labels (Fleet's legacy substitution).
//!
//! Supported expressions: `.ClusterName`, `.ClusterNamespace`, `.ClusterLabels.<key>`,
//! `.ClusterAnnotations.<key>`, `.ClusterValues.<path>` (the Cluster's `templateValues`), and `index .ClusterLabels "<key>"` (same for annotations).
//! Fleet evaluates full Go templates with sprig functions; any other expression is an error
//! naming it, never silently left in place.

use serde_json::{Map, Value};

use crate::target::ClusterInfo;

/// An expression fleet-rs does not evaluate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("helm values: unsupported template expression ${{{0}}}")]
pub struct TemplateError(pub String);

/// The values for `cluster`: expressions replaced, cluster labels under `global.fleet`.
pub fn cluster_values(
    values: &Map<String, Value>,
    cluster: &ClusterInfo,
) -> Result<Map<String, Value>, TemplateError> {
    let mut result = Map::new();
    for (key, value) in values {
        result.insert(key.clone(), substitute(value, cluster)?);
    }
    let labels: Map<String, Value> = cluster
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let global = result
        .entry("global")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(global) = global {
        let fleet = global
            .entry("fleet")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(fleet) = fleet {
            fleet.insert("clusterLabels".to_owned(), Value::Object(labels));
        }
    }
    Ok(result)
}

fn substitute(value: &Value, cluster: &ClusterInfo) -> Result<Value, TemplateError> {
    Ok(match value {
        Value::String(text) => Value::String(expand(text, cluster)?),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| substitute(v, cluster))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), substitute(v, cluster)?)))
                .collect::<Result<_, TemplateError>>()?,
        ),
        other => other.clone(),
    })
}

/// Replaces every `${ expr }` in `text`.
fn expand(text: &str, cluster: &ClusterInfo) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let Some(end) = rest[start..].find('}') else {
            break;
        };
        out.push_str(&rest[..start]);
        let expr = rest[start + 2..start + end].trim();
        out.push_str(&evaluate(expr, cluster)?);
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn evaluate(expr: &str, cluster: &ClusterInfo) -> Result<String, TemplateError> {
    let unsupported = || TemplateError(format!(" {expr} "));
    let lookup = |map: &std::collections::BTreeMap<String, String>, key: &str| {
        map.get(key).cloned().unwrap_or_default()
    };
    if expr == ".ClusterName" {
        return Ok(cluster.name.clone());
    }
    if expr == ".ClusterNamespace" {
        return Ok(cluster.namespace.clone());
    }
    if let Some(key) = expr.strip_prefix(".ClusterLabels.") {
        return Ok(lookup(&cluster.labels, key));
    }
    if let Some(key) = expr.strip_prefix(".ClusterAnnotations.") {
        return Ok(lookup(&cluster.annotations, key));
    }
    if let Some(path) = expr.strip_prefix(".ClusterValues.") {
        let mut value = cluster
            .values
            .get(path.split('.').next().unwrap_or_default());
        for key in path.split('.').skip(1) {
            value = value.and_then(|v| v.get(key));
        }
        return Ok(match value {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        });
    }
    if let Some(args) = expr.strip_prefix("index ") {
        let mut parts = args.split_whitespace();
        let (Some(map), Some(key), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(unsupported());
        };
        let key = key.trim_matches('"');
        return match map {
            ".ClusterLabels" => Ok(lookup(&cluster.labels, key)),
            ".ClusterAnnotations" => Ok(lookup(&cluster.annotations, key)),
            _ => Err(unsupported()),
        };
    }
    Err(unsupported())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    #[test]
    fn cluster_data_is_substituted() {
        let cluster = ClusterInfo {
            name: "prod-1".to_owned(),
            namespace: "fleet-default".to_owned(),
            labels: BTreeMap::from([("region".to_owned(), "eu".to_owned())]),
            values: json!({"tier": {"size": 3}})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            ..ClusterInfo::default()
        };
        let values = json!({
            "name": "${ .ClusterName }",
            "where": "${ .ClusterNamespace }/${ index .ClusterLabels \"region\" }",
            "list": ["${.ClusterLabels.region}", 3],
            "size": "${ .ClusterValues.tier.size }",
        });
        let result = cluster_values(values.as_object().expect("object"), &cluster).expect("ok");
        assert_eq!(result["name"], "prod-1");
        assert_eq!(result["where"], "fleet-default/eu");
        assert_eq!(result["list"], json!(["eu", 3]));
        assert_eq!(result["size"], "3");
        assert_eq!(result["global"]["fleet"]["clusterLabels"]["region"], "eu");
    }

    #[test]
    fn unsupported_expressions_are_errors() {
        let values = json!({"x": "${ .ClusterName | upper }"});
        let err = cluster_values(values.as_object().expect("object"), &ClusterInfo::default())
            .expect_err("unsupported");
        assert!(err.to_string().contains("upper"), "{err}");
    }
}
