//! Helm release records in the downstream cluster (Secrets driver) and what removing a
//! BundleDeployment does besides `helm uninstall`. Each release is labelled with the
//! BundleDeployment that deploys it ([`OWNER_LABEL`], set by `fleet-deployer`), so that two bundles asking for the
//! same release name get an error instead of replacing each other's objects. With
//! `keepResources` Helm forgets the release (its history Secrets are deleted, as Fleet does)
//! and the objects stay; with `deleteNamespace` the release namespace goes, unless it is one
//! a cluster cannot do without. `namespaceLabels`/`namespaceAnnotations` are set on the
//! release namespace.

use fleet_deployer::Release;
use fleet_deployer::helm::{DEPLOYMENT_LABEL, OWNER_LABEL, deployment_label};
use std::collections::BTreeMap;

use fleet_runtime::{WriteError, Writer};
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client};

/// Namespaces never deleted for `deleteNamespace`.
pub const PROTECTED_NAMESPACES: [&str; 4] =
    ["default", "kube-system", "kube-public", "kube-node-lease"];

/// The BundleDeployment that deployed `release`, if the release exists and says so.
pub async fn owner(client: &Client, release: &Release) -> Result<Option<String>, kube::Error> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &release.namespace);
    let selector = format!("owner=helm,name={}", release.name);
    let list = secrets
        .list_metadata(&ListParams::default().labels(&selector))
        .await?;
    Ok(list
        .items
        .iter()
        .find_map(|s| s.metadata.labels.as_ref()?.get(OWNER_LABEL).cloned()))
}

/// Whether `release`'s deployed revision is `bundle_deployment`'s deployment `deployment_id`
/// (helm succeeded, but the status saying so may not have been written).
pub async fn deployed_as(
    client: &Client,
    release: &Release,
    bundle_deployment: &str,
    deployment_id: &str,
) -> Result<bool, kube::Error> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &release.namespace);
    let selector = format!("owner=helm,name={},status=deployed", release.name);
    let list = secrets
        .list_metadata(&ListParams::default().labels(&selector))
        .await?;
    let wanted = deployment_label(deployment_id);
    Ok(list.items.iter().any(|s| {
        s.metadata.labels.as_ref().is_some_and(|labels| {
            labels.get(OWNER_LABEL).map(String::as_str) == Some(bundle_deployment)
                && labels.get(DEPLOYMENT_LABEL) == Some(&wanted)
        })
    }))
}

/// Why `bundle_deployment` may not deploy `release`: another one deploys it.
pub async fn conflict(
    client: &Client,
    release: &Release,
    bundle_deployment: &str,
) -> Result<Option<String>, kube::Error> {
    Ok(owner(client, release)
        .await?
        .filter(|owner| owner != bundle_deployment)
        .map(|owner| {
            format!(
                "release {release} is deployed by bundle deployment {owner}; \
                 two bundles cannot share a Helm release name (set helm.releaseName or namespace)"
            )
        }))
}

/// Deletes the release's Helm history (Secrets driver: `owner=helm,name=<release>`), leaving
/// every object the release created in place.
pub async fn forget_release(
    writer: &Writer,
    client: &Client,
    release: &Release,
) -> Result<(), WriteError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &release.namespace);
    let selector = format!("owner=helm,name={}", release.name);
    writer
        .delete_collection(
            &secrets,
            &DeleteParams::default(),
            &ListParams::default().labels(&selector),
        )
        .await
}

/// Deletes `namespace` unless it is protected or already gone.
pub async fn delete_namespace(
    writer: &Writer,
    client: &Client,
    namespace: &str,
) -> Result<(), WriteError> {
    if PROTECTED_NAMESPACES.contains(&namespace) || namespace.starts_with("cattle-") {
        tracing::info!(namespace, "deleteNamespace: keeping a system namespace");
        return Ok(());
    }
    let namespaces = Api::<Namespace>::all(client.clone());
    if writer
        .delete(&namespaces, namespace, &DeleteParams::default())
        .await?
    {
        tracing::info!(namespace, "deleteNamespace: namespace deleted");
    }
    Ok(())
}

/// Sets a bundle's `namespaceLabels` and `namespaceAnnotations` on its release namespace
/// (merged with what the namespace has; nothing to do when neither is set).
pub async fn label_namespace(
    writer: &Writer,
    client: &Client,
    namespace: &str,
    labels: Option<&BTreeMap<String, String>>,
    annotations: Option<&BTreeMap<String, String>>,
) -> Result<(), WriteError> {
    if labels.is_none() && annotations.is_none() {
        return Ok(());
    }
    // Only the maps that are set: `null` in a merge patch would remove the namespace's own.
    let mut metadata = serde_json::Map::new();
    if let Some(labels) = labels {
        metadata.insert("labels".to_owned(), serde_json::json!(labels));
    }
    if let Some(annotations) = annotations {
        metadata.insert("annotations".to_owned(), serde_json::json!(annotations));
    }
    let patch = serde_json::json!({ "metadata": metadata });
    let namespaces = Api::<Namespace>::all(client.clone());
    writer
        .patch(
            &namespaces,
            namespace,
            &PatchParams::default(),
            &Patch::Merge(patch),
        )
        .await
        .map(drop)
}

/// The ServiceAccount a bundle deploys as, Fleet's way: its `serviceAccount`, else
/// `fleet-default` if that exists, looked up in the agent's namespace; helm then impersonates
/// it (`system:serviceaccount:<ns>:<name>`). `None`: the agent's own identity. A named
/// ServiceAccount that does not exist is an error.
pub async fn service_account(
    client: &Client,
    agent_namespace: &str,
    name: Option<&str>,
) -> Result<Option<String>, String> {
    let named = name.filter(|n| !n.is_empty());
    let wanted = named.unwrap_or(DEFAULT_SERVICE_ACCOUNT);
    let found = Api::<ServiceAccount>::namespaced(client.clone(), agent_namespace)
        .get_opt(wanted)
        .await
        .map_err(|e| format!("reading ServiceAccount {agent_namespace}/{wanted}: {e}"))?;
    match (found, named) {
        (Some(_), _) => Ok(Some(format!(
            "system:serviceaccount:{agent_namespace}:{wanted}"
        ))),
        (None, None) => Ok(None),
        (None, Some(name)) => Err(format!(
            "serviceAccount {name} not found in the agent's namespace {agent_namespace}"
        )),
    }
}

/// The ServiceAccount bundles without `serviceAccount` deploy as, when it exists (Fleet's).
pub const DEFAULT_SERVICE_ACCOUNT: &str = "fleet-default";

/// `allowedTargetNamespaceSelector` (from a GitRepoRestriction): the release namespace must
/// exist and match it. Why not, or `None` when allowed.
pub async fn namespace_allowed(
    client: &Client,
    namespace: &str,
    selector: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
) -> Result<Option<String>, kube::Error> {
    let Some(selector) = selector else {
        return Ok(None);
    };
    let Some(found) = Api::<Namespace>::all(client.clone())
        .get_opt(namespace)
        .await?
    else {
        return Ok(Some(format!(
            "namespace {namespace} does not exist, and allowedTargetNamespaceSelector allows only existing namespaces it matches"
        )));
    };
    let labels = found.metadata.labels.unwrap_or_default();
    Ok(
        match fleet_render::target::selector_matches(selector, &labels) {
            Ok(true) => None,
            Ok(false) => Some(format!(
                "namespace {namespace} does not match allowedTargetNamespaceSelector"
            )),
            Err(e) => Some(format!("allowedTargetNamespaceSelector: {e}")),
        },
    )
}
