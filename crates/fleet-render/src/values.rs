//! Per-cluster Helm values, as Fleet's controller computes them (`preProcess` in its target
//! builder) before writing a BundleDeployment:
//!
//! 1. a string value `global.fleet.clusterLabels.<label>` becomes that label's value (empty
//!    when the cluster has no such label);
//! 2. unless `helm.disablePreProcess`, the values are Go templates: written as YAML, rendered
//!    with `${ }` delimiters and the sprig functions ([`crate::template`]) over
//!    `.ClusterName`, `.ClusterNamespace`, `.ClusterLabels`, `.ClusterAnnotations` and
//!    `.ClusterValues` (the Cluster's `templateValues`), and read back, so that
//!    `replicas: ${ .ClusterValues.replicas }` is a number;
//! 3. each `helm.templateValues` entry is rendered the same way, read as YAML, and set under
//!    its key.

use serde_json::{Map, Value, json};

use crate::target::ClusterInfo;
pub use crate::template::TemplateError;

/// What [`cluster_values`] templates.
#[derive(Debug, Clone, Copy)]
pub struct ValueTemplates<'a> {
    pub values: &'a Map<String, Value>,
    /// `helm.templateValues`.
    pub template_values: &'a std::collections::BTreeMap<String, String>,
    /// `helm.disablePreProcess`: steps 2 and 3 are skipped.
    pub disable_pre_process: bool,
}

/// The values for `cluster`.
pub fn cluster_values(
    templates: ValueTemplates<'_>,
    cluster: &ClusterInfo,
) -> Result<Map<String, Value>, TemplateError> {
    let mut values = Value::Object(templates.values.clone());
    label_values(&mut values, cluster);
    let Value::Object(mut values) = values else {
        return Ok(Map::new());
    };
    if templates.disable_pre_process {
        return Ok(values);
    }
    let context = json!({
        "ClusterName": cluster.name,
        "ClusterNamespace": cluster.namespace,
        "ClusterLabels": cluster.labels,
        "ClusterAnnotations": cluster.annotations,
        "ClusterValues": cluster.values,
    });
    let mut rendered = Map::new();
    for (key, value) in values {
        rendered.insert(key, render_value(&value, &context)?);
    }
    values = rendered;
    for (key, template) in templates.template_values {
        let text = crate::template::render(template, &context)?;
        let value: Value = serde_saphyr::from_str(&text).map_err(|e| {
            TemplateError(format!("templateValues.{key}: {text:?} is not YAML: {e}"))
        })?;
        values.insert(key.clone(), value);
    }
    Ok(values)
}

/// Fleet's label substitution: `global.fleet.clusterLabels.<label>` strings (in maps, also
/// inside lists of maps) become the label's value.
fn label_values(value: &mut Value, cluster: &ClusterInfo) {
    const PREFIX: &str = "global.fleet.clusterLabels.";
    match value {
        Value::String(text) => {
            if let Some(label) = text.strip_prefix(PREFIX) {
                *text = cluster.labels.get(label).cloned().unwrap_or_default();
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| label_values(v, cluster)),
        Value::Object(map) => map.values_mut().for_each(|v| label_values(v, cluster)),
        _ => {}
    }
}

/// A value with its templates rendered. A one-line string with a template is read back as a
/// YAML scalar, as Fleet's round trip through YAML reads it (`3` a number, `true` a
/// boolean); a multi-line one stays a string (YAML writes it as a block).
fn render_value(value: &Value, context: &Value) -> Result<Value, TemplateError> {
    Ok(match value {
        Value::String(text) if text.contains("${") => {
            let rendered = crate::template::render(text, context)?;
            if text.contains('\n') {
                Value::String(rendered)
            } else {
                scalar(rendered)
            }
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| render_value(v, context))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), render_value(v, context)?)))
                .collect::<Result<_, TemplateError>>()?,
        ),
        other => other.clone(),
    })
}

/// `text` as a plain YAML scalar reads: a number, a boolean, null, or the text itself.
fn scalar(text: String) -> Value {
    match serde_saphyr::from_str::<Value>(&text) {
        Ok(value @ (Value::Number(_) | Value::Bool(_))) => value,
        Ok(Value::Null) if !text.trim().is_empty() => Value::Null,
        _ => Value::String(text),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn cluster() -> ClusterInfo {
        ClusterInfo {
            name: "prod-1".to_owned(),
            namespace: "fleet-default".to_owned(),
            labels: BTreeMap::from([("region".to_owned(), "eu".to_owned())]),
            values: json!({"tier": {"size": 3}, "name": "big"})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            ..ClusterInfo::default()
        }
    }

    fn templated(
        values: Value,
        template_values: &[(&str, &str)],
        disable: bool,
    ) -> Map<String, Value> {
        let template_values: BTreeMap<String, String> = template_values
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let templates = ValueTemplates {
            values: values.as_object().expect("object"),
            template_values: &template_values,
            disable_pre_process: disable,
        };
        cluster_values(templates, &cluster()).expect("templated")
    }

    #[test]
    fn values_are_templated_as_fleet_templates_them() {
        let result = templated(
            json!({
                "name": "${ .ClusterName }",
                "where": "${ .ClusterNamespace }/${ index .ClusterLabels \"region\" }",
                "list": ["${.ClusterLabels.region}", 3],
                "size": "${ .ClusterValues.tier.size }",
                "on": "${ eq .ClusterLabels.region \"eu\" }",
                "region": "global.fleet.clusterLabels.region",
                "zone": "global.fleet.clusterLabels.zone",
                "helm": "{{ .Values.kept }}",
            }),
            &[(
                "resources",
                "limits:\n  cpu: ${ .ClusterValues.tier.size }\n",
            )],
            false,
        );
        assert_eq!(result["name"], "prod-1");
        assert_eq!(result["where"], "fleet-default/eu");
        assert_eq!(result["list"], json!(["eu", 3]));
        assert_eq!(result["size"], json!(3), "read back as YAML: a number");
        assert_eq!(result["on"], json!(true));
        assert_eq!(result["region"], "eu");
        assert_eq!(result["zone"], "");
        assert_eq!(result["helm"], "{{ .Values.kept }}");
        assert_eq!(result["resources"], json!({"limits": {"cpu": 3}}));
    }

    #[test]
    fn disable_pre_process_keeps_templates_but_not_labels() {
        let result = templated(
            json!({"name": "${ .ClusterName }", "region": "global.fleet.clusterLabels.region"}),
            &[("extra", "${ .ClusterName }")],
            true,
        );
        assert_eq!(result["name"], "${ .ClusterName }");
        assert_eq!(result["region"], "eu");
        assert!(!result.contains_key("extra"));
    }

    #[test]
    fn template_errors_name_the_problem() {
        let values = json!({"x": "${ .ClusterName | nosuchfunction }"});
        let templates = ValueTemplates {
            values: values.as_object().expect("object"),
            template_values: &BTreeMap::new(),
            disable_pre_process: false,
        };
        let err = cluster_values(templates, &cluster()).expect_err("unknown function");
        assert!(err.to_string().contains("nosuchfunction"), "{err}");
    }
}
