//! The BundleDeployments a Bundle should have, one per targeted Cluster, and the Content
//! holding its manifest, as Fleet's BundleReconciler builds them. Pure: the controller feeds
//! it the Bundle and the candidate clusters and writes the result; `fleet target` prints it.
//!
//! - name: the Bundle's; namespace: the cluster's (Fleet's `cluster-<ns>-<name>-<hash>`);
//! - labels: `bundle-name`, `bundle-namespace`, `cluster`, `cluster-namespace`,
//!   `managed=true`, and every `fleet.cattle.io/` label of the Bundle (repo name, commit, ...);
//! - `deploymentID`: `<manifest ID>:<hash of the merged options>`, the manifest ID being
//!   `s-<sha256 of the resources>`, also the name of the Content;
//! - options: the Bundle's with the matching target customizations merged in, Helm values
//!   templated for the cluster.

use std::collections::BTreeMap;
use std::io::Write as _;

use crate::target::{ClusterInfo, GroupInfo, SelectorError, match_cluster, selector_matches};
use crate::values::{TemplateError, ValueTemplates, cluster_values};
use base64::Engine as _;
use fleet_api::labels::{
    BUNDLE_NAME, BUNDLE_NAMESPACE, CLUSTER, CLUSTER_NAMESPACE, FLEET_LABEL_PREFIX, MANAGED,
};
use fleet_api::{Bundle, BundleDeployment, BundleDeploymentSpec, Cluster, ClusterGroup, Content};
use kube::ResourceExt;
use sha2::{Digest as _, Sha256};

/// A cluster a Bundle may deploy to.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub info: ClusterInfo,
    /// Where its BundleDeployments live.
    pub deployment_namespace: String,
}

/// A Cluster as a deployment candidate: its groups are those of `groups` (of its namespace)
/// whose selector matches its labels; its deployment namespace is its status's or Fleet's
/// name for it.
pub fn candidate<'a>(
    cluster: &Cluster,
    groups: impl IntoIterator<Item = &'a ClusterGroup>,
) -> Candidate {
    let namespace = cluster.namespace().unwrap_or_default();
    let labels = cluster.labels().clone();
    let member_of = groups
        .into_iter()
        .filter(|g| g.namespace().as_deref() == Some(namespace.as_str()))
        .filter(|g| {
            g.spec
                .selector
                .as_ref()
                .is_some_and(|s| selector_matches(s, &labels).unwrap_or(false))
        })
        .map(|g| GroupInfo {
            name: g.name_any(),
            labels: g.labels().clone(),
        })
        .collect();
    Candidate {
        deployment_namespace: deployment_namespace(cluster),
        info: ClusterInfo {
            name: cluster.name_any(),
            namespace,
            labels,
            annotations: cluster.annotations().clone(),
            groups: member_of,
            values: cluster.spec.template_values.clone().unwrap_or_default(),
        },
    }
}

/// The namespace of a Cluster's BundleDeployments: its status's, or Fleet's name for it.
pub fn deployment_namespace(cluster: &Cluster) -> String {
    cluster
        .status
        .as_ref()
        .and_then(|s| s.namespace.clone())
        .unwrap_or_else(|| {
            fleet_api::naming::cluster_namespace(
                &cluster.namespace().unwrap_or_default(),
                &cluster.name_any(),
            )
        })
}

/// Why a Bundle's deployments cannot be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("{0}")]
    Selector(#[from] SelectorError),
    #[error("cluster {cluster}: {source}")]
    Template {
        cluster: String,
        source: TemplateError,
    },
}

/// What a Bundle should produce, on the `candidates` it was given.
#[derive(Debug, Clone)]
pub struct Desired<'a, D = BundleDeployment> {
    pub content: Content,
    pub targets: Vec<Target<'a, D>>,
}

/// A targeted cluster and the BundleDeployment it should get, as `D`.
#[derive(Debug, Clone)]
pub struct Target<'a, D = BundleDeployment> {
    /// Borrowed from the candidates: a Bundle may target thousands of clusters.
    pub cluster: &'a ClusterInfo,
    /// The deployment it should deploy (the rollout compares them).
    pub deployment_id: String,
    pub deployment: D,
}

/// `s-<sha256 of the resources' JSON>`.
pub fn manifest_id(bundle: &Bundle) -> String {
    format!(
        "s-{}",
        sha256_hex(&serde_json::to_vec(&bundle.spec.resources).unwrap_or_default())
    )
}

/// The Content holding the Bundle's manifest (gzip of `{"resources": [...]}`).
pub fn content(bundle: &Bundle) -> Content {
    let manifest = serde_json::json!({ "resources": bundle.spec.resources });
    let json = serde_json::to_vec(&manifest).unwrap_or_default();
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let compressed = encoder
        .write_all(&json)
        .and_then(|()| encoder.finish())
        .unwrap_or_default();
    let mut content = Content::new(&manifest_id(bundle));
    content.content = Some(base64::engine::general_purpose::STANDARD.encode(compressed));
    content.sha256sum = Some(sha256_hex(&json));
    content
}

/// The BundleDeployments for `bundle` on the `candidates` that its targets select.
pub fn desired<'a>(
    bundle: &Bundle,
    candidates: &'a [Candidate],
) -> Result<Desired<'a>, TargetError> {
    desired_as(bundle, candidates, |bd| bd)
}

/// [`desired`], each BundleDeployment turned into `D` by `finish` as soon as it is built: a
/// Bundle may target thousands of clusters, and the caller may keep something smaller.
pub fn desired_as<'a, D>(
    bundle: &Bundle,
    candidates: &'a [Candidate],
    mut finish: impl FnMut(BundleDeployment) -> D,
) -> Result<Desired<'a, D>, TargetError> {
    let manifest = manifest_id(bundle);
    let mut targets = Vec::new();
    for candidate in candidates {
        let Some(found) = match_cluster(&bundle.spec, &candidate.info)? else {
            continue;
        };
        let mut options = found.options;
        if let Some(helm) = options.helm.as_mut() {
            let values = helm.values.clone().unwrap_or_default();
            if !values.is_empty() || !helm.template_values.is_empty() {
                let templates = ValueTemplates {
                    values: &values,
                    template_values: &helm.template_values,
                    disable_pre_process: helm.disable_pre_process,
                };
                let templated = cluster_values(templates, &candidate.info).map_err(|source| {
                    TargetError::Template {
                        cluster: format!("{}/{}", candidate.info.namespace, candidate.info.name),
                        source,
                    }
                })?;
                helm.values = Some(templated);
            }
        }
        let id = format!(
            "{manifest}:{}",
            sha256_hex(&serde_json::to_vec(&options).unwrap_or_default())
        );
        let mut bd = BundleDeployment::new(
            &bundle.name_any(),
            BundleDeploymentSpec {
                paused: bundle.spec.paused,
                staged_options: options.clone(),
                staged_deployment_id: Some(id.clone()),
                correct_drift: options.correct_drift.clone(),
                options,
                deployment_id: Some(id.clone()),
                depends_on: bundle.spec.depends_on.clone(),
                helm_chart_options: bundle.spec.helm_op_options.clone(),
                ..BundleDeploymentSpec::default()
            },
        );
        bd.metadata.namespace = Some(candidate.deployment_namespace.clone());
        bd.metadata.labels = Some(labels(bundle, &candidate.info));
        targets.push(Target {
            cluster: &candidate.info,
            deployment_id: id,
            deployment: finish(bd),
        });
    }
    Ok(Desired {
        content: content(bundle),
        targets,
    })
}

/// A BundleDeployment's labels for `bundle` on `cluster`.
pub fn labels(bundle: &Bundle, cluster: &ClusterInfo) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = bundle
        .labels()
        .iter()
        .filter(|(k, _)| k.starts_with(FLEET_LABEL_PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    labels.insert(BUNDLE_NAME.to_owned(), bundle.name_any());
    labels.insert(
        BUNDLE_NAMESPACE.to_owned(),
        bundle.namespace().unwrap_or_default(),
    );
    labels.insert(CLUSTER.to_owned(), cluster.name.clone());
    labels.insert(CLUSTER_NAMESPACE.to_owned(), cluster.namespace.clone());
    labels.insert(MANAGED.to_owned(), "true".to_owned());
    labels
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use fleet_api::{
        BundleDeploymentOptions, BundleSpec, BundleTarget, ClusterSelection, HelmOptions,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
    use serde_json::json;

    use super::*;

    fn candidate(name: &str, env: &str) -> Candidate {
        Candidate {
            info: ClusterInfo {
                name: name.to_owned(),
                namespace: "fleet-default".to_owned(),
                labels: BTreeMap::from([("env".to_owned(), env.to_owned())]),
                ..ClusterInfo::default()
            },
            deployment_namespace: fleet_api::naming::cluster_namespace("fleet-default", name),
        }
    }

    fn bundle() -> Bundle {
        let mut bundle = Bundle::new(
            "app",
            BundleSpec {
                options: BundleDeploymentOptions {
                    helm: Some(HelmOptions {
                        values: json!({"cluster": "${ .ClusterName }"}).as_object().cloned(),
                        ..HelmOptions::default()
                    }),
                    ..BundleDeploymentOptions::default()
                },
                targets: vec![BundleTarget {
                    name: Some("prod".to_owned()),
                    clusters: ClusterSelection {
                        cluster_selector: Some(LabelSelector {
                            match_labels: Some(BTreeMap::from([(
                                "env".to_owned(),
                                "prod".to_owned(),
                            )])),
                            ..LabelSelector::default()
                        }),
                        ..ClusterSelection::default()
                    },
                    ..BundleTarget::default()
                }],
                ..BundleSpec::default()
            },
        );
        bundle.metadata.namespace = Some("fleet-default".to_owned());
        bundle.metadata.labels = Some(BTreeMap::from([
            ("fleet.cattle.io/repo-name".to_owned(), "repo".to_owned()),
            ("team".to_owned(), "web".to_owned()),
        ]));
        bundle
    }

    #[test]
    fn one_deployment_per_targeted_cluster_with_fleets_labels_and_ids() {
        let candidates = [
            candidate("p1", "prod"),
            candidate("d1", "dev"),
            candidate("p2", "prod"),
        ];
        let desired = desired(&bundle(), &candidates).expect("desired");
        assert_eq!(desired.targets.len(), 2);
        let bd = &desired.targets[0].deployment;
        assert_eq!(
            bd.metadata.namespace.as_deref(),
            Some(candidates[0].deployment_namespace.as_str())
        );
        let labels = bd.metadata.labels.clone().unwrap_or_default();
        assert_eq!(
            labels.get("fleet.cattle.io/repo-name").map(String::as_str),
            Some("repo")
        );
        assert_eq!(
            labels.get("fleet.cattle.io/cluster").map(String::as_str),
            Some("p1")
        );
        assert!(
            !labels.contains_key("team"),
            "only fleet.cattle.io/ labels are copied"
        );
        let id = bd.spec.deployment_id.clone().unwrap_or_default();
        assert!(id.starts_with(&format!(
            "{}:",
            desired.content.metadata.name.clone().unwrap_or_default()
        )));
        let values = bd
            .spec
            .options
            .helm
            .clone()
            .and_then(|h| h.values)
            .unwrap_or_default();
        assert_eq!(values["cluster"], "p1", "values are templated per cluster");
        assert_ne!(
            desired.targets[0].deployment.spec.deployment_id,
            desired.targets[1].deployment.spec.deployment_id
        );
    }

    #[test]
    fn the_manifest_id_follows_the_resources_only() {
        let a = bundle();
        let mut b = bundle();
        b.spec.paused = true;
        assert_eq!(manifest_id(&a), manifest_id(&b));
        b.spec.resources.push(fleet_api::BundleResource {
            name: Some("x.yaml".to_owned()),
            content: Some("kind: X".to_owned()),
            encoding: None,
        });
        assert_ne!(manifest_id(&a), manifest_id(&b));
    }
}
