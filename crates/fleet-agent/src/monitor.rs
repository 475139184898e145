//! Drift detection for a deployed BundleDeployment: each object of its release (`helm get
//! manifest`) is read from the downstream cluster and compared with what the release wants
//! ([`fleet_deployer::drift`]); missing objects and changed fields become `modifiedStatus`.

use std::collections::HashMap;
use std::sync::Mutex;

use fleet_api::{ModifiedStatus, ResourceRef};
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::discovery::{Scope, pinned_kind};
use kube::{Api, Client};
use serde_json::Value;

/// Kinds already looked up in the downstream cluster's discovery.
#[derive(Debug, Default)]
pub struct Kinds(Mutex<HashMap<GroupVersionKind, (ApiResource, bool)>>);

impl Kinds {
    async fn resolve(
        &self,
        client: &Client,
        gvk: &GroupVersionKind,
    ) -> Result<(ApiResource, bool), kube::Error> {
        if let Some(found) = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(gvk)
        {
            return Ok(found.clone());
        }
        let (resource, capabilities) = pinned_kind(client, gvk).await?;
        let found = (resource, capabilities.scope == Scope::Namespaced);
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(gvk.clone(), found.clone());
        Ok(found)
    }
}

/// How the live objects differ from `manifest` (objects of a release in `namespace`).
pub async fn modified(
    client: &Client,
    kinds: &Kinds,
    manifest: &[Value],
    namespace: &str,
) -> Result<Vec<ModifiedStatus>, String> {
    let mut out = Vec::new();
    for desired in manifest {
        let text = |pointer: &str| {
            desired
                .pointer(pointer)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let (api_version, kind, name) =
            (text("/apiVersion"), text("/kind"), text("/metadata/name"));
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", &api_version));
        let gvk = GroupVersionKind::gvk(group, version, &kind);
        let (resource, namespaced) = kinds
            .resolve(client, &gvk)
            .await
            .map_err(|e| format!("{api_version} {kind}: {e}"))?;
        let object_namespace = namespaced.then(|| {
            let own = text("/metadata/namespace");
            if own.is_empty() {
                namespace.to_owned()
            } else {
                own
            }
        });
        let api: Api<DynamicObject> = match &object_namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
            None => Api::all_with(client.clone(), &resource),
        };
        let reference = ResourceRef {
            kind: Some(kind.clone()),
            api_version: Some(api_version.clone()),
            namespace: object_namespace.clone(),
            name: Some(name.clone()),
        };
        match api
            .get_opt(&name)
            .await
            .map_err(|e| format!("{kind} {name}: {e}"))?
        {
            None => out.push(ModifiedStatus {
                resource: reference,
                missing: true,
                ..ModifiedStatus::default()
            }),
            Some(live) => {
                let live = serde_json::to_value(live).unwrap_or_default();
                if let Some(patch) = fleet_deployer::drift::drift(desired, &live) {
                    out.push(ModifiedStatus {
                        resource: reference,
                        patch: Some(patch.to_string()),
                        ..ModifiedStatus::default()
                    });
                }
            }
        }
    }
    Ok(out)
}
