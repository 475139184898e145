//! `dependsOn`: a BundleDeployment is deployed only once the bundles it depends on are in one
//! of the accepted states (default `Ready`) on the same cluster, as Fleet's agent checks:
//! dependencies by `name` (the Bundle's name) or by a `selector` on the Bundle's labels
//! (which its BundleDeployments carry), looked up in the cluster's namespace upstream.

use fleet_api::labels::BUNDLE_NAME;
use fleet_api::{BundleDeployment, BundleRef, BundleState};
use fleet_render::target::selector_matches;
use kube::api::ListParams;
use kube::{Api, ResourceExt};

/// Why `bd` must wait, or `None` when every dependency is met.
pub async fn unmet(
    upstream: &Api<BundleDeployment>,
    bd: &BundleDeployment,
) -> Result<Option<String>, kube::Error> {
    if bd.spec.depends_on.is_empty() {
        return Ok(None);
    }
    let others = upstream.list(&ListParams::default()).await?.items;
    Ok(waiting_for(&bd.spec.depends_on, &others))
}

/// What of `depends_on` is not met by `deployments` (the cluster's BundleDeployments). Pure.
pub fn waiting_for(depends_on: &[BundleRef], deployments: &[BundleDeployment]) -> Option<String> {
    let mut waiting = Vec::new();
    for dependency in depends_on {
        let accepted: Vec<String> = if dependency.accepted_states.is_empty() {
            vec![state_name(BundleState::Ready)]
        } else {
            dependency.accepted_states.clone()
        };
        let matching: Vec<&BundleDeployment> = deployments
            .iter()
            .filter(|d| matches(dependency, d))
            .collect();
        let what = dependency
            .name
            .clone()
            .unwrap_or_else(|| "bundles matching the selector".to_owned());
        if matching.is_empty() {
            waiting.push(format!("{what} (not deployed to this cluster)"));
            continue;
        }
        for d in matching {
            let state = state_name(d.state());
            if !accepted.contains(&state) {
                let name = d
                    .labels()
                    .get(BUNDLE_NAME)
                    .cloned()
                    .unwrap_or_else(|| d.name_any());
                waiting.push(format!("{name} is {state}"));
            }
        }
    }
    (!waiting.is_empty()).then(|| format!("waiting for dependencies: {}", waiting.join(", ")))
}

fn matches(dependency: &BundleRef, bd: &BundleDeployment) -> bool {
    let labels = bd.labels();
    if let Some(name) = &dependency.name
        && labels.get(BUNDLE_NAME) != Some(name)
    {
        return false;
    }
    match &dependency.selector {
        Some(selector) => selector_matches(selector, labels).unwrap_or(false),
        None => dependency.name.is_some(),
    }
}

fn state_name(state: BundleState) -> String {
    serde_json::to_value(state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use fleet_api::{BundleDeploymentSpec, BundleDeploymentStatus};

    use super::*;

    fn deployed(bundle: &str, ready: bool, labels: &[(&str, &str)]) -> BundleDeployment {
        let mut bd = BundleDeployment::new(
            bundle,
            BundleDeploymentSpec {
                deployment_id: Some("s-1:o".to_owned()),
                staged_deployment_id: Some("s-1:o".to_owned()),
                ..BundleDeploymentSpec::default()
            },
        );
        let mut all: std::collections::BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        all.insert(BUNDLE_NAME.to_owned(), bundle.to_owned());
        bd.metadata.labels = Some(all);
        bd.status = Some(BundleDeploymentStatus {
            applied_deployment_id: Some("s-1:o".to_owned()),
            ready,
            non_modified: true,
            ..BundleDeploymentStatus::default()
        });
        bd
    }

    fn by_name(name: &str) -> BundleRef {
        BundleRef {
            name: Some(name.to_owned()),
            ..BundleRef::default()
        }
    }

    #[test]
    fn a_dependency_must_be_deployed_here_and_ready() {
        let crds = deployed("crds", false, &[]);
        assert_eq!(
            waiting_for(&[by_name("crds")], std::slice::from_ref(&crds)).as_deref(),
            Some("waiting for dependencies: crds is NotReady")
        );
        assert_eq!(
            waiting_for(&[by_name("db")], &[crds]).as_deref(),
            Some("waiting for dependencies: db (not deployed to this cluster)")
        );
        assert_eq!(
            waiting_for(&[by_name("crds")], &[deployed("crds", true, &[])]),
            None
        );
    }

    #[test]
    fn selectors_and_accepted_states() {
        let infra = deployed("infra", false, &[("tier", "infra")]);
        let selector: BundleRef = serde_json::from_value(serde_json::json!({
            "selector": {"matchLabels": {"tier": "infra"}},
            "acceptedStates": ["Ready", "NotReady"],
        }))
        .expect("ref");
        assert_eq!(waiting_for(&[selector], &[infra]), None);
    }
}
