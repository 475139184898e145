//! BundleNamespaceMapping: a mapping in a bundle's namespace whose `bundleSelector` matches
//! the bundle's labels lets it target the Clusters of every namespace its
//! `namespaceSelector` matches, as Fleet does. A mapping without one of the selectors maps
//! nothing; an empty selector matches everything. Pure: the controller and `fleet target`
//! both use it.

use std::collections::BTreeMap;

use fleet_api::BundleNamespaceMapping;

use crate::target::selector_matches;

/// The namespaces a bundle may target besides its own, and the mappings skipped because a
/// selector does not parse (`mapping: error`, for the caller to report).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Mapped {
    pub namespaces: Vec<String>,
    pub invalid: Vec<String>,
}

/// The namespaces, besides its own, whose Clusters a bundle (`bundle_namespace`,
/// `bundle_labels`) may target. `namespaces` holds every namespace with its labels.
pub fn mapped_namespaces<'a>(
    bundle_namespace: &str,
    bundle_labels: &BTreeMap<String, String>,
    mappings: impl IntoIterator<Item = &'a BundleNamespaceMapping>,
    namespaces: &[(String, BTreeMap<String, String>)],
) -> Mapped {
    let mut out: Vec<String> = Vec::new();
    let mut invalid = Vec::new();
    for mapping in mappings {
        if mapping.metadata.namespace.as_deref() != Some(bundle_namespace) {
            continue;
        }
        let (Some(bundles), Some(targets)) =
            (&mapping.bundle_selector, &mapping.namespace_selector)
        else {
            continue;
        };
        match selector_matches(bundles, bundle_labels) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(error) => {
                invalid.push(format!("{}: bundleSelector: {error}", name(mapping)));
                continue;
            }
        }
        for (namespace, labels) in namespaces {
            if namespace == bundle_namespace || out.contains(namespace) {
                continue;
            }
            match selector_matches(targets, labels) {
                Ok(true) => out.push(namespace.clone()),
                Ok(false) => {}
                Err(error) => {
                    invalid.push(format!("{}: namespaceSelector: {error}", name(mapping)));
                    break;
                }
            }
        }
    }
    out.sort();
    Mapped {
        namespaces: out,
        invalid,
    }
}

fn name(mapping: &BundleNamespaceMapping) -> String {
    format!(
        "BundleNamespaceMapping {}/{}",
        mapping.metadata.namespace.as_deref().unwrap_or_default(),
        mapping.metadata.name.as_deref().unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(namespace: &str, yaml: &str) -> BundleNamespaceMapping {
        let text =
            format!("apiVersion: fleet.cattle.io/v1alpha1\nkind: BundleNamespaceMapping\n{yaml}");
        let mut mapping: BundleNamespaceMapping = serde_saphyr::from_str(&text).expect("mapping");
        mapping.metadata.namespace = Some(namespace.to_owned());
        mapping
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn selected_bundles_reach_the_selected_namespaces_only() {
        let namespaces = vec![
            ("team-a".to_owned(), labels(&[("fleet", "shared")])),
            ("team-b".to_owned(), labels(&[("fleet", "shared")])),
            ("private".to_owned(), labels(&[])),
        ];
        let mappings = [mapping(
            "fleet-default",
            "bundleSelector:\n  matchLabels:\n    share: \"yes\"\nnamespaceSelector:\n  matchLabels:\n    fleet: shared\n",
        )];
        let shared = labels(&[("share", "yes")]);
        let mapped = |namespace: &str, labels: &BTreeMap<String, String>, mappings: &[_]| {
            mapped_namespaces(namespace, labels, mappings, &namespaces).namespaces
        };
        assert_eq!(
            mapped("fleet-default", &shared, &mappings),
            ["team-a", "team-b"]
        );
        assert!(
            mapped("fleet-default", &labels(&[]), &mappings).is_empty(),
            "bundle not selected"
        );
        assert!(
            mapped("elsewhere", &shared, &mappings).is_empty(),
            "a mapping works for bundles of its own namespace"
        );
        let no_selector = [mapping("fleet-default", "bundleSelector: {}\n")];
        assert!(mapped("fleet-default", &shared, &no_selector).is_empty());
        let invalid = [mapping(
            "fleet-default",
            "metadata:\n  name: bad\nbundleSelector:\n  matchLabels:\n    -bad: x\nnamespaceSelector: {}\n",
        )];
        let result = mapped_namespaces("fleet-default", &shared, &invalid, &namespaces);
        assert!(result.namespaces.is_empty());
        assert_eq!(result.invalid.len(), 1, "{result:?}");
        assert!(
            result.invalid[0]
                .starts_with("BundleNamespaceMapping fleet-default/bad: bundleSelector")
        );
    }
}
