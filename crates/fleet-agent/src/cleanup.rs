//! What removing a BundleDeployment does downstream besides `helm uninstall`: with
//! `keepResources` Helm forgets the release (its history Secrets are deleted, as Fleet does)
//! and the objects stay; with `deleteNamespace` the release namespace goes, unless it is one
//! a cluster cannot do without.

use fleet_deployer::Release;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{DeleteParams, ListParams};
use kube::{Api, Client};

/// Namespaces never deleted for `deleteNamespace`.
pub const PROTECTED_NAMESPACES: [&str; 4] =
    ["default", "kube-system", "kube-public", "kube-node-lease"];

/// Deletes the release's Helm history (Secrets driver: `owner=helm,name=<release>`), leaving
/// every object the release created in place.
pub async fn forget_release(client: &Client, release: &Release) -> Result<(), kube::Error> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &release.namespace);
    let selector = format!("owner=helm,name={}", release.name);
    secrets
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels(&selector),
        )
        .await?;
    Ok(())
}

/// Deletes `namespace` unless it is protected or already gone.
pub async fn delete_namespace(client: &Client, namespace: &str) -> Result<(), kube::Error> {
    if PROTECTED_NAMESPACES.contains(&namespace) || namespace.starts_with("cattle-") {
        tracing::info!(namespace, "deleteNamespace: keeping a system namespace");
        return Ok(());
    }
    match Api::<Namespace>::all(client.clone())
        .delete(namespace, &DeleteParams::default())
        .await
    {
        Ok(_) => {
            tracing::info!(namespace, "deleteNamespace: namespace deleted");
            Ok(())
        }
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}
