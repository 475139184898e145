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
    #[serde(default, skip_serializing_if = "Option::is_none")]
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
            FleetYamlError {
                line: offending_line(text, &message),
                message,
            }
        })
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
