//! `fleet.yaml`: a bundle's options, next to its files in a git repository.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::bundle::{BundleSpec, BundleTarget};
use crate::gitrepo::GitTarget;

/// The top-level structure of `fleet.yaml` (Fleet's `FleetYAML`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FleetYaml {
    /// The bundle's name (default: from the GitRepo name and the path).
    #[serde(default, skip_serializing_if = "crate::common::is_blank")]
    pub name: Option<String>,
    /// Labels for the Bundle (usable in `dependsOn.selector`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(flatten)]
    pub bundle: BundleSpec,
    /// Per-target changes to the options; which apply depends on `targetCustomizationMode`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_customizations: Vec<BundleTarget>,
    /// Image scans (optional in Fleet, disabled by default); kept as written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_scans: Vec<serde_json::Map<String, serde_json::Value>>,
    /// Replaces the GitRepo's targets for this bundle.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub override_targets: Vec<GitTarget>,
}

/// A `fleet.yaml` that does not parse: the parser's message, and the line where known.
#[derive(Debug, thiserror::Error)]
#[error("fleet.yaml{}: {message}", line.map(|l| format!(" line {l}")).unwrap_or_default())]
pub struct FleetYamlError {
    pub line: Option<usize>,
    pub message: String,
}

impl FleetYaml {
    /// Parses `fleet.yaml` text.
    ///
    /// YAML syntax errors carry the parser's position. Type errors inside the flattened
    /// bundle options do not (serde buffers flattened fields and loses positions), so the line
    /// is found from the offending value, e.g. `timeoutSeconds: soon`.
    pub fn from_yaml(text: &str) -> Result<Self, FleetYamlError> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        if let Err(e) = serde_saphyr::from_str::<serde_json::Value>(text) {
            return Err(FleetYamlError {
                line: e.location().map(|l| l.line() as usize),
                message: first_line(&e.to_string()),
            });
        }
        serde_saphyr::from_str(text).map_err(|e| {
            let full = e.to_string();
            let message = first_line(&full)
                .trim_start_matches("error: ")
                .split_once(": ")
                .map_or_else(|| first_line(&full), |(_, rest)| rest.to_owned());
            let tree = serde_saphyr::from_str::<serde_json::Value>(text).unwrap_or_default();
            FleetYamlError {
                line: offending_line(text, &message),
                message: with_field_path(&tree, message),
            }
        })
    }
}

/// A type error as `field.path: expected an integer, got "x"` where the offending value is
/// found at exactly one place of the document; serde's message as it is otherwise.
fn with_field_path(tree: &serde_json::Value, message: String) -> String {
    let Some((kind, value, expected)) = type_error(&message) else {
        return message;
    };
    let mut found = Vec::new();
    scalar_paths(tree, &value, String::new(), &mut found);
    let [path] = found.as_slice() else {
        return message;
    };
    let expected = match expected {
        "i8" | "i16" | "i32" | "i64" | "u8" | "u16" | "u32" | "u64" | "usize" | "isize" => {
            "an integer"
        }
        "f32" | "f64" => "a number",
        "a boolean" | "bool" => "true or false",
        other => other,
    };
    let got = match kind {
        "string" => format!("{value:?}"),
        _ => value,
    };
    format!("{path}: expected {expected}, got {got}")
}

/// `invalid type: <kind> "<value>", expected <what>` (or an unquoted value) in parts.
fn type_error(message: &str) -> Option<(&str, String, &str)> {
    let rest = message.strip_prefix("invalid type: ")?;
    let (found, expected) = rest.split_once(", expected ")?;
    let (kind, value) = found.split_once(' ')?;
    let value = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value);
    Some((kind, value.to_owned(), expected))
}

/// The dotted paths (`helm.timeoutSeconds`, `targetCustomizations[1].name`) of the scalars of
/// `tree` that read as `value`.
fn scalar_paths(tree: &serde_json::Value, value: &str, at: String, out: &mut Vec<String>) {
    use serde_json::Value;
    match tree {
        Value::Object(map) => {
            for (key, child) in map {
                let path = if at.is_empty() {
                    key.clone()
                } else {
                    format!("{at}.{key}")
                };
                scalar_paths(child, value, path, out);
            }
        }
        Value::Array(items) => {
            for (index, child) in items.iter().enumerate() {
                scalar_paths(child, value, format!("{at}[{index}]"), out);
            }
        }
        Value::String(text) if text == value => out.push(at),
        Value::Number(number) if number.to_string() == value => out.push(at),
        Value::Bool(flag) if flag.to_string() == value => out.push(at),
        _ => {}
    }
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().to_owned()
}

/// The 1-based line whose value is the one a serde message quotes (`invalid type: string
/// "soon", expected i64`), if exactly one line has it.
fn offending_line(text: &str, message: &str) -> Option<usize> {
    let value = message.split('"').nth(1)?;
    let mut lines = text.lines().enumerate().filter(|(_, line)| {
        let line = line.trim();
        line.ends_with(&format!(": {value}")) || line.ends_with(&format!("- {value}"))
    });
    match (lines.next(), lines.next()) {
        (Some((index, _)), None) => Some(index + 1),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_errors_name_the_field_and_the_line() {
        // (fleet.yaml, message, line)
        let cases = [
            (
                "helm:\n  timeoutSeconds: not-a-number\n",
                "helm.timeoutSeconds: expected an integer, got \"not-a-number\"",
                Some(2),
            ),
            (
                "defaultNamespace: web\nhelm:\n  atomic: sometimes\n",
                "helm.atomic: expected true or false, got \"sometimes\"",
                Some(3),
            ),
            (
                "targetCustomizations:\n- name: a\n  helm:\n    timeoutSeconds: soon\n",
                "targetCustomizations[0].helm.timeoutSeconds: expected an integer, got \"soon\"",
                Some(4),
            ),
        ];
        for (yaml, message, line) in cases {
            let error = FleetYaml::from_yaml(yaml).expect_err(yaml);
            assert_eq!(error.message, message, "{yaml}");
            assert_eq!(error.line, line, "{yaml}");
        }
    }

    #[test]
    fn a_value_found_twice_keeps_serdes_message() {
        let yaml = "defaultNamespace: soon\nhelm:\n  timeoutSeconds: soon\n";
        let error = FleetYaml::from_yaml(yaml).expect_err("type error");
        assert!(
            error.message.starts_with("invalid type"),
            "{}",
            error.message
        );
    }

    #[test]
    fn syntax_errors_point_at_the_line() {
        let error = FleetYaml::from_yaml("helm:\n  values: [a\n").expect_err("syntax");
        assert!(error.line.is_some(), "{error:?}");
    }
}
