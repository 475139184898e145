//! BundleNamespaceMapping: a mapping in a bundle's namespace whose `bundleSelector` matches
//! the bundle's labels lets it target the Clusters of every namespace its
//! `namespaceSelector` matches, as Fleet does. A mapping without one of the selectors maps
//! nothing; an empty selector matches everything. Pure.

use std::collections::BTreeMap;

use fleet_api::BundleNamespaceMapping;
use fleet_render::target::selector_matches;

/// The namespaces, besides its own, whose Clusters a bundle (`bundle_namespace`,
/// `bundle_labels`) may target. `namespaces` holds every namespace with its labels.
/// Mappings whose selectors do not parse are skipped (and logged).
pub fn mapped_namespaces<'a>(
    bundle_namespace: &str,
    bundle_labels: &BTreeMap<String, String>,
    mappings: impl IntoIterator<Item = &'a BundleNamespaceMapping>,
    namespaces: &[(String, BTreeMap<String, String>)],
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
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
                tracing::warn!(mapping = ?mapping.metadata.name, namespace = bundle_namespace, %error, "invalid bundleSelector");
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
                    tracing::warn!(mapping = ?mapping.metadata.name, namespace = bundle_namespace, %error, "invalid namespaceSelector");
                    break;
                }
            }
        }
    }
    out.sort();
    out
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
        assert_eq!(
            mapped_namespaces("fleet-default", &shared, &mappings, &namespaces),
            ["team-a", "team-b"]
        );
        assert!(
            mapped_namespaces("fleet-default", &labels(&[]), &mappings, &namespaces).is_empty(),
            "bundle not selected"
        );
        assert!(
            mapped_namespaces("elsewhere", &shared, &mappings, &namespaces).is_empty(),
            "a mapping works for bundles of its own namespace"
        );
        let no_selector = [mapping("fleet-default", "bundleSelector: {}\n")];
        assert!(mapped_namespaces("fleet-default", &shared, &no_selector, &namespaces).is_empty());
    }
}
