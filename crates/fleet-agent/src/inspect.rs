//! Inspecting a deployed BundleDeployment: each object of its release (`helm get manifest`) is
//! read from the downstream cluster, compared with what the release wants
//! ([`fleet_deployer::drift`], minus `diff.comparePatches`; missing objects, changed fields
//! and objects left over from the release become `modifiedStatus`) and judged for readiness ([`fleet_deployer::readiness`], minus
//! `ignore.conditions`; `nonReadyStatus`).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use fleet_api::{
    BundleDeployment, BundleDeploymentOptions, BundleDeploymentResource, ModifiedStatus,
    NonReadyStatus, ResourceRef,
};
use fleet_deployer::{Deployer, Release};
use fleet_render::render::{namespace, release_name};
use kube::ResourceExt;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams};
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

/// The objects of each deployed release (`helm get manifest`), by `namespace/name`, with the
/// deployment they belong to: read once per deployment, so that looking at a release often
/// (objects not ready yet) does not run helm each time, and a release installed again by
/// another replica is read again.
#[derive(Debug, Default)]
pub struct Manifests(Mutex<HashMap<String, Deployed>>);

/// A release's objects as one deployment (its ID first) installed them.
type Deployed = (String, Arc<Vec<Value>>);

impl Manifests {
    pub fn get(&self, release: &str, deployment_id: &str) -> Option<Arc<Vec<Value>>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(release)
            .filter(|(id, _)| id == deployment_id)
            .map(|(_, manifest)| manifest.clone())
    }

    pub fn insert(&self, release: String, deployment_id: String, manifest: Arc<Vec<Value>>) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(release, (deployment_id, manifest));
    }

    pub fn forget(&self, release: &str) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(release);
    }
}

/// Looks at deployed releases: what helm says each holds, next to the live objects.
pub struct Inspector {
    pub downstream: Client,
    pub deployer: Deployer,
    kinds: Kinds,
    manifests: Manifests,
}

impl std::fmt::Debug for Inspector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inspector").finish_non_exhaustive()
    }
}

impl Inspector {
    pub fn new(downstream: Client, deployer: Deployer) -> Self {
        Self {
            downstream,
            deployer,
            kinds: Kinds::default(),
            manifests: Manifests::default(),
        }
    }

    /// Drops what is known of `release` (it is about to be installed again or removed).
    pub fn forget(&self, release: &Release) {
        self.manifests.forget(&release.to_string());
    }

    /// The objects of `bd`'s release as deployment `deployment_id` installed them.
    pub async fn inspect(
        &self,
        bd: &BundleDeployment,
        deployment_id: &str,
    ) -> Result<Inspection, String> {
        let options = &bd.spec.options;
        let release = Release {
            name: release_name(&bd.name_any(), options),
            namespace: namespace(options),
        };
        let key = release.to_string();
        let manifest = match self.manifests.get(&key, deployment_id) {
            Some(manifest) => manifest,
            None => {
                let deployer = self.deployer.clone();
                let target = release.clone();
                let manifest = tokio::task::spawn_blocking(move || deployer.manifest(&target))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())?;
                let manifest = Arc::new(manifest);
                self.manifests
                    .insert(key, deployment_id.to_owned(), manifest.clone());
                manifest
            }
        };
        inspect(&self.downstream, &self.kinds, &manifest, &release, options).await
    }
}

/// What the live objects of a release look like next to what it wants.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Inspection {
    pub modified: Vec<ModifiedStatus>,
    pub non_ready: Vec<NonReadyStatus>,
    /// The release's objects that exist.
    pub resources: Vec<BundleDeploymentResource>,
}

/// Reads the objects of `manifest` (those of `release`) and inspects them; objects of the
/// same kinds that helm marks as the release's but the manifest does not hold (left over)
/// are reported with `delete`.
pub async fn inspect(
    client: &Client,
    kinds: &Kinds,
    manifest: &[Value],
    release: &Release,
    options: &BundleDeploymentOptions,
) -> Result<Inspection, String> {
    let mut seen_kinds: Vec<(ApiResource, bool)> = Vec::new();
    let mut wanted: HashSet<ResourceRef> = HashSet::new();
    let rules = Rules {
        compare_patches: options
            .diff
            .as_ref()
            .map(|d| d.compare_patches.as_slice())
            .unwrap_or_default(),
        ignore_conditions: options
            .ignore
            .as_ref()
            .map(|i| i.conditions.as_slice())
            .unwrap_or_default(),
    };
    let mut out = Inspection::default();
    for desired in manifest {
        let object = locate(client, kinds, desired, &release.namespace).await?;
        if !seen_kinds.iter().any(|(r, _)| r == &object.resource) {
            seen_kinds.push((object.resource.clone(), object.namespaced));
        }
        let api: Api<DynamicObject> = match &object.reference.namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &object.resource),
            None => Api::all_with(client.clone(), &object.resource),
        };
        let name = object.reference.name.clone().unwrap_or_default();
        let live = api.get_opt(&name).await.map_err(|e| {
            let kind = object.reference.kind.as_deref().unwrap_or_default();
            format!("{kind} {name}: {e}")
        })?;
        wanted.insert(object.reference.clone());
        judge(&mut out, desired, object.reference, live, &rules);
    }
    for (resource, namespaced) in &seen_kinds {
        out.modified
            .extend(left_over(client, resource, *namespaced, release, &wanted).await?);
    }
    Ok(out)
}

/// Objects of one kind that carry helm's annotations for `release` but are not `wanted`.
async fn left_over(
    client: &Client,
    resource: &ApiResource,
    namespaced: bool,
    release: &Release,
    wanted: &HashSet<ResourceRef>,
) -> Result<Vec<ModifiedStatus>, String> {
    let api: Api<DynamicObject> = if namespaced {
        Api::namespaced_with(client.clone(), &release.namespace, resource)
    } else {
        Api::all_with(client.clone(), resource)
    };
    let list = api
        .list_metadata(&ListParams::default())
        .await
        .map_err(|e| format!("listing {}: {e}", resource.plural))?;
    Ok(list
        .items
        .into_iter()
        .filter(|object| {
            let annotations = object.metadata.annotations.as_ref();
            let annotation = |key: &str| annotations.and_then(|a| a.get(key)).map(String::as_str);
            annotation(HELM_RELEASE_NAME) == Some(release.name.as_str())
                && annotation(HELM_RELEASE_NAMESPACE) == Some(release.namespace.as_str())
        })
        .map(|object| ResourceRef {
            kind: Some(resource.kind.clone()),
            api_version: Some(resource.api_version.clone()),
            namespace: namespaced.then(|| release.namespace.clone()),
            name: object.metadata.name,
        })
        .filter(|reference| !wanted.contains(reference))
        .map(|reference| ModifiedStatus {
            resource: reference,
            delete: true,
            ..ModifiedStatus::default()
        })
        .collect())
}

/// The annotations helm puts on the objects of a release.
const HELM_RELEASE_NAME: &str = "meta.helm.sh/release-name";
const HELM_RELEASE_NAMESPACE: &str = "meta.helm.sh/release-namespace";

/// The `Ready` condition's message for non-ready objects, as Fleet words it:
/// `deployment.apps apps/web [in-progress] 1 of 3 replicas available; ...`.
pub fn non_ready_message(non_ready: &[NonReadyStatus]) -> Option<String> {
    let parts: Vec<String> = non_ready
        .iter()
        .map(|n| {
            let r = &n.resource;
            let group = r
                .api_version
                .as_deref()
                .and_then(|v| v.rsplit_once('/'))
                .map(|(group, _)| format!(".{group}"))
                .unwrap_or_default();
            let kind = r.kind.as_deref().unwrap_or_default().to_lowercase();
            let name = match &r.namespace {
                Some(ns) => format!("{ns}/{}", r.name.as_deref().unwrap_or_default()),
                None => r.name.clone().unwrap_or_default(),
            };
            let state = n.summary.state.as_deref().unwrap_or("not-ready");
            format!(
                "{kind}{group} {name} [{state}] {}",
                n.summary.message.join(", ")
            )
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join("; "))
}
/// What decides whether an object counts as drifted or not ready.
struct Rules<'a> {
    /// `diff.comparePatches`: differences that do not count as drift.
    compare_patches: &'a [fleet_api::ComparePatch],
    /// `ignore.conditions`: conditions that do not make an object not ready.
    ignore_conditions: &'a [std::collections::BTreeMap<String, String>],
}

/// One object of a manifest and where it lives.
struct Located {
    resource: ApiResource,
    namespaced: bool,
    reference: ResourceRef,
}

/// Where the manifest's object `desired` lives: its API resource, and its namespace (its
/// own, else the release's, for namespaced kinds).
async fn locate(
    client: &Client,
    kinds: &Kinds,
    desired: &Value,
    namespace: &str,
) -> Result<Located, String> {
    let text = |pointer: &str| {
        desired
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let (api_version, kind, name) = (text("/apiVersion"), text("/kind"), text("/metadata/name"));
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
    Ok(Located {
        resource,
        namespaced,
        reference: ResourceRef {
            kind: Some(kind),
            api_version: Some(api_version),
            namespace: object_namespace,
            name: Some(name),
        },
    })
}

/// Adds what `live` (the object `reference` as it is, if it exists) says against `desired`:
/// missing, drifted (as `rules` count drift), not ready; and that it exists.
fn judge(
    out: &mut Inspection,
    desired: &Value,
    reference: ResourceRef,
    live: Option<DynamicObject>,
    rules: &Rules<'_>,
) {
    let Some(live) = live else {
        out.modified.push(ModifiedStatus {
            resource: reference,
            missing: true,
            ..ModifiedStatus::default()
        });
        return;
    };
    let uid = live.metadata.uid.clone();
    out.resources.push(BundleDeploymentResource {
        resource: reference.clone(),
        created_at: live
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.to_string()),
    });
    let live = serde_json::to_value(live).unwrap_or_default();
    let ignored = fleet_deployer::drift::ignored_pointers(rules.compare_patches, &reference);
    if let Some(patch) = fleet_deployer::drift::drift_ignoring(desired, &live, &ignored) {
        out.modified.push(ModifiedStatus {
            resource: reference.clone(),
            patch: Some(patch.to_string()),
            ..ModifiedStatus::default()
        });
    }
    if let Some(summary) = fleet_deployer::readiness::not_ready(&live, rules.ignore_conditions) {
        out.non_ready.push(NonReadyStatus {
            uid,
            resource: reference,
            summary,
        });
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn config_map(data: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "app", "namespace": "default"}, "data": {"color": data}})
    }

    fn reference() -> ResourceRef {
        ResourceRef {
            kind: Some("ConfigMap".to_owned()),
            api_version: Some("v1".to_owned()),
            namespace: Some("default".to_owned()),
            name: Some("app".to_owned()),
        }
    }

    #[test]
    fn an_object_is_missing_drifted_or_as_desired() {
        let rules = Rules {
            compare_patches: &[],
            ignore_conditions: &[],
        };
        let live = |data: &str| {
            let mut object: DynamicObject =
                serde_json::from_value(config_map(data)).expect("object");
            object.metadata.uid = Some("u1".to_owned());
            Some(object)
        };
        // (live, missing, drifted, exists)
        let cases = [
            (None, true, false, false),
            (live("blue"), false, false, true),
            (live("red"), false, true, true),
        ];
        for (live, missing, drifted, exists) in cases {
            let mut out = Inspection::default();
            judge(&mut out, &config_map("blue"), reference(), live, &rules);
            assert_eq!(out.modified.iter().any(|m| m.missing), missing);
            assert_eq!(out.modified.iter().any(|m| m.patch.is_some()), drifted);
            assert_eq!(out.resources.len(), usize::from(exists));
            assert!(out.non_ready.is_empty());
        }
    }
}
