//! Which clusters a Bundle deploys to, and with which options (Fleet's target matcher and
//! `options.Merge`). Pure: the controller uses it with Clusters from the API, `fleet test`
//! and `fleet target` with clusters described on the command line.
//!
//! A target (or restriction) matches a cluster when **all** its non-empty criteria hold:
//! `clusterName` (the Cluster's name or its `management.cattle.io/cluster-display-name`
//! label), `clusterSelector` on the Cluster's labels, and, per ClusterGroup the cluster is in,
//! `clusterGroup` and `clusterGroupSelector` on the group's labels. A target without criteria
//! matches nothing. With restrictions present, a cluster must match one of them too.

use std::collections::BTreeMap;

use fleet_api::label_syntax::{label_key_error, label_value_error};
use fleet_api::values::merge_json;
use fleet_api::{
    BundleDeploymentOptions, BundleSpec, BundleTarget, ClusterSelection, TargetCustomizationMode,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::core::{Selector, SelectorExt as _};
use serde_json::Value;

/// Rancher's label with a cluster's display name, which `clusterName` also matches.
pub const DISPLAY_NAME_LABEL: &str = "management.cattle.io/cluster-display-name";

/// A cluster as targeting sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterInfo {
    pub name: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// The ClusterGroups whose selector matches this cluster.
    pub groups: Vec<GroupInfo>,
    /// The Cluster's `spec.templateValues` (`${ .ClusterValues.x }` in Helm values).
    pub values: serde_json::Map<String, Value>,
}

/// A ClusterGroup the cluster belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupInfo {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

/// A selector that cannot be evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid label selector: {0}")]
pub struct SelectorError(String);

/// What a cluster gets from a Bundle.
#[derive(Debug, Clone, PartialEq)]
pub struct Match {
    /// The names of the targets that matched, in order.
    pub targets: Vec<String>,
    /// The bundle's options with the matching targets' merged over them.
    pub options: BundleDeploymentOptions,
}

/// The deployment of the target named `name` (`fleet test -t`, Fleet's `MatchForTarget`):
/// the bundle's options with that target's merged over them; `None` if there is no such target.
pub fn match_target(spec: &BundleSpec, name: &str) -> Option<Match> {
    let target = spec
        .targets
        .iter()
        .find(|t| t.name.as_deref() == Some(name))?;
    Some(Match {
        targets: vec![name.to_owned()],
        options: merge_options(&spec.options, &target.options),
    })
}

/// The deployment `cluster` gets from a bundle with `spec`, `None` if it gets none (no
/// matching target, no matching restriction, or `doNotDeploy`).
pub fn match_cluster(
    spec: &BundleSpec,
    cluster: &ClusterInfo,
) -> Result<Option<Match>, SelectorError> {
    if !spec.target_restrictions.is_empty() {
        let mut allowed = false;
        for restriction in &spec.target_restrictions {
            if selection_matches(&restriction.clusters, cluster)? {
                allowed = true;
                break;
            }
        }
        if !allowed {
            return Ok(None);
        }
    }
    let mut matching: Vec<&BundleTarget> = Vec::new();
    for target in &spec.targets {
        if selection_matches(&target.clusters, cluster)? {
            matching.push(target);
            if spec.target_customization_mode.unwrap_or_default()
                == TargetCustomizationMode::FirstMatch
            {
                break;
            }
        }
    }
    if matching.is_empty() || matching.iter().any(|t| t.do_not_deploy) {
        return Ok(None);
    }
    let mut options = spec.options.clone();
    for target in &matching {
        options = merge_options(&options, &target.options);
    }
    Ok(Some(Match {
        targets: matching
            .iter()
            .map(|t| t.name.clone().unwrap_or_default())
            .collect(),
        options,
    }))
}

/// Whether a target's or restriction's criteria all hold for `cluster`.
pub fn selection_matches(
    selection: &ClusterSelection,
    cluster: &ClusterInfo,
) -> Result<bool, SelectorError> {
    let ClusterSelection {
        cluster_name,
        cluster_selector,
        cluster_group,
        cluster_group_selector,
    } = selection;
    if cluster_name.is_none()
        && cluster_selector.is_none()
        && cluster_group.is_none()
        && cluster_group_selector.is_none()
    {
        return Ok(false);
    }
    if let Some(name) = cluster_name
        && name != &cluster.name
        && cluster.labels.get(DISPLAY_NAME_LABEL) != Some(name)
    {
        return Ok(false);
    }
    if let Some(selector) = cluster_selector
        && !selector_matches(selector, &cluster.labels)?
    {
        return Ok(false);
    }
    if cluster_group.is_none() && cluster_group_selector.is_none() {
        return Ok(true);
    }
    for group in &cluster.groups {
        let name_ok = cluster_group.as_ref().is_none_or(|g| g == &group.name);
        let selector_ok = match cluster_group_selector {
            Some(selector) => selector_matches(selector, &group.labels)?,
            None => true,
        };
        if name_ok && selector_ok {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A label selector against labels; an empty selector matches everything. A selector
/// Kubernetes would not parse (an unknown operator, `In` without values, a malformed key or
/// value) is an error, never "matches nothing".
pub fn selector_matches(
    selector: &LabelSelector,
    labels: &BTreeMap<String, String>,
) -> Result<bool, SelectorError> {
    let match_labels = selector.match_labels.iter().flatten();
    let expressions = selector.match_expressions.iter().flatten();
    let invalid = match_labels
        .filter_map(|(key, value)| label_key_error(key).or_else(|| label_value_error(value)))
        .chain(expressions.filter_map(|e| {
            label_key_error(&e.key).or_else(|| {
                e.values
                    .iter()
                    .flatten()
                    .find_map(|value| label_value_error(value))
            })
        }))
        .next();
    if let Some(message) = invalid {
        return Err(SelectorError(message));
    }
    let selector =
        Selector::try_from(selector.clone()).map_err(|e| SelectorError(e.to_string()))?;
    Ok(selector.matches(labels))
}

/// `custom` over `base`, as Fleet's `options.Merge`: every field `custom` sets replaces the
/// base's, maps (Helm values, labels) merge key by key, lists are replaced.
pub fn merge_options(
    base: &BundleDeploymentOptions,
    custom: &BundleDeploymentOptions,
) -> BundleDeploymentOptions {
    let mut merged = serde_json::to_value(base).unwrap_or(Value::Null);
    let overlay = serde_json::to_value(custom).unwrap_or(Value::Null);
    merge_json(&mut merged, overlay);
    serde_json::from_value(merged).unwrap_or_else(|_| base.clone())
}

#[cfg(test)]
mod tests {
    use fleet_api::{BundleTargetRestriction, HelmOptions};
    use serde_json::json;

    use super::*;

    fn cluster(name: &str, labels: &[(&str, &str)], groups: &[&str]) -> ClusterInfo {
        ClusterInfo {
            name: name.to_owned(),
            namespace: "fleet-default".to_owned(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            annotations: BTreeMap::new(),
            groups: groups
                .iter()
                .map(|g| GroupInfo {
                    name: (*g).to_owned(),
                    labels: BTreeMap::from([("tier".to_owned(), (*g).to_owned())]),
                })
                .collect(),
            values: serde_json::Map::new(),
        }
    }

    fn selector(labels: &[(&str, &str)]) -> Option<LabelSelector> {
        Some(LabelSelector {
            match_labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
            ..LabelSelector::default()
        })
    }

    fn target(name: &str, clusters: ClusterSelection, values: serde_json::Value) -> BundleTarget {
        BundleTarget {
            name: Some(name.to_owned()),
            clusters,
            options: BundleDeploymentOptions {
                helm: Some(HelmOptions {
                    values: values.as_object().cloned(),
                    ..HelmOptions::default()
                }),
                ..BundleDeploymentOptions::default()
            },
            ..BundleTarget::default()
        }
    }

    #[test]
    fn a_selector_kubernetes_would_not_parse_is_an_error() {
        let labels = BTreeMap::from([("env".to_owned(), "prod".to_owned())]);
        let bad = |json: serde_json::Value| -> LabelSelector {
            serde_json::from_value(json).expect("selector")
        };
        let cases = [
            (
                bad(json!({"matchLabels": {"-env": "prod"}})),
                "invalid label key",
            ),
            (
                bad(json!({"matchLabels": {"env": "prod!"}})),
                "invalid label value",
            ),
            (
                bad(json!({"matchExpressions": [{"key": "env", "operator": "Foo"}]})),
                "operator",
            ),
            (
                bad(json!({"matchExpressions": [{"key": "a b", "operator": "Exists"}]})),
                "invalid label key",
            ),
            (
                bad(
                    json!({"matchExpressions": [{"key": "env", "operator": "In", "values": ["a b"]}]}),
                ),
                "invalid label value",
            ),
        ];
        for (selector, expected) in cases {
            let error = selector_matches(&selector, &labels).expect_err("invalid");
            assert!(error.to_string().contains(expected), "{error}");
        }
        let good = bad(json!({"matchLabels": {"env": "prod"}}));
        assert_eq!(selector_matches(&good, &labels), Ok(true));
    }

    #[test]
    fn criteria_must_all_hold_and_none_matches_nothing() {
        let dev = cluster("dev-1", &[("env", "dev")], &["edge"]);
        let by_label = ClusterSelection {
            cluster_selector: selector(&[("env", "dev")]),
            ..ClusterSelection::default()
        };
        assert_eq!(selection_matches(&by_label, &dev), Ok(true));
        let label_and_group = ClusterSelection {
            cluster_group: Some("core".to_owned()),
            ..by_label.clone()
        };
        assert_eq!(selection_matches(&label_and_group, &dev), Ok(false));
        let group_selector = ClusterSelection {
            cluster_group_selector: selector(&[("tier", "edge")]),
            ..ClusterSelection::default()
        };
        assert_eq!(selection_matches(&group_selector, &dev), Ok(true));
        assert_eq!(
            selection_matches(&ClusterSelection::default(), &dev),
            Ok(false)
        );
        let everything = ClusterSelection {
            cluster_selector: Some(LabelSelector::default()),
            ..ClusterSelection::default()
        };
        assert_eq!(selection_matches(&everything, &dev), Ok(true));
        let mut display = cluster("c-x7k2", &[(DISPLAY_NAME_LABEL, "prod-eu")], &[]);
        let by_name = ClusterSelection {
            cluster_name: Some("prod-eu".to_owned()),
            ..ClusterSelection::default()
        };
        assert_eq!(selection_matches(&by_name, &display), Ok(true));
        display.labels.clear();
        assert_eq!(selection_matches(&by_name, &display), Ok(false));
    }

    #[test]
    fn first_match_customizes_and_values_merge_deeply() {
        let spec = BundleSpec {
            options: BundleDeploymentOptions {
                helm: Some(HelmOptions {
                    values: json!({"replicas": 1, "image": {"tag": "v1", "pull": "Always"}})
                        .as_object()
                        .cloned(),
                    ..HelmOptions::default()
                }),
                ..BundleDeploymentOptions::default()
            },
            targets: vec![
                target(
                    "dev",
                    ClusterSelection {
                        cluster_selector: selector(&[("env", "dev")]),
                        ..ClusterSelection::default()
                    },
                    json!({"image": {"tag": "dev"}}),
                ),
                target(
                    "all",
                    ClusterSelection {
                        cluster_selector: Some(LabelSelector::default()),
                        ..ClusterSelection::default()
                    },
                    json!({"replicas": 3}),
                ),
            ],
            ..BundleSpec::default()
        };
        let m = match_cluster(&spec, &cluster("d", &[("env", "dev")], &[]))
            .expect("valid")
            .expect("matched");
        assert_eq!(m.targets, ["dev"]);
        let values = m.options.helm.and_then(|h| h.values).expect("values");
        assert_eq!(
            serde_json::Value::Object(values),
            json!({"replicas": 1, "image": {"tag": "dev", "pull": "Always"}})
        );

        let mut all = spec.clone();
        all.target_customization_mode = Some(TargetCustomizationMode::AllMatches);
        let m = match_cluster(&all, &cluster("d", &[("env", "dev")], &[]))
            .expect("valid")
            .expect("matched");
        assert_eq!(m.targets, ["dev", "all"]);
        let values = m.options.helm.and_then(|h| h.values).expect("values");
        assert_eq!(values.get("replicas"), Some(&json!(3)));
    }

    #[test]
    fn restrictions_and_do_not_deploy_exclude() {
        let mut spec = BundleSpec {
            targets: vec![BundleTarget {
                name: Some("all".to_owned()),
                clusters: ClusterSelection {
                    cluster_selector: Some(LabelSelector::default()),
                    ..ClusterSelection::default()
                },
                ..BundleTarget::default()
            }],
            target_restrictions: vec![BundleTargetRestriction {
                name: None,
                clusters: ClusterSelection {
                    cluster_selector: selector(&[("env", "prod")]),
                    ..ClusterSelection::default()
                },
            }],
            ..BundleSpec::default()
        };
        let dev = cluster("d", &[("env", "dev")], &[]);
        let prod = cluster("p", &[("env", "prod")], &[]);
        assert_eq!(match_cluster(&spec, &dev), Ok(None));
        assert!(match_cluster(&spec, &prod).expect("valid").is_some());
        spec.targets[0].do_not_deploy = true;
        assert_eq!(match_cluster(&spec, &prod), Ok(None));
    }
}
