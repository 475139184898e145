//! Writing a repository's Bundles to a cluster: create, update and prune, as `fleet apply`
//! does when it has no `-o`, and as gitjob does for each GitRepo.
//!
//! Each Bundle carries a hash of what was written ([`CONTENT_HASH`]): a Bundle whose hash is
//! unchanged is not written again, so re-reading an unchanged repository costs no API write.
//! Changed Bundles are server-side applied with the caller's field manager, so fields that
//! disappear from the repository disappear from the Bundle. Bundles labelled with the
//! repository's name that the repository no longer produces are deleted. A leader-elected
//! writer gives the store its claim ([`BundleStore::gated`]), checked right before each write.

use std::collections::BTreeMap;

use fleet_api::Bundle;
use fleet_api::labels::{CONTENT_HASH, REPO_NAME};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client};
use sha2::{Digest as _, Sha256};

/// Why Bundles could not be written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A failed API call.
    #[error("{action} Bundle {namespace}/{name}: {source}")]
    Api {
        action: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: Box<kube::Error>,
    },
    /// The writer's claim (its Lease) was gone right before a write: nothing more is written.
    #[error("not writing Bundle {namespace}/{name}: this replica no longer holds its Lease")]
    NotLeading { namespace: String, name: String },
}

/// A writer's claim, asked right before each write (`Leadership::still_leading`).
type Gate = std::sync::Arc<dyn Fn() -> bool + Send + Sync>;

/// What a sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub created: Vec<String>,
    pub updated: Vec<String>,
    pub unchanged: Vec<String>,
    pub deleted: Vec<String>,
}

impl SyncReport {
    /// How many API writes the sync made.
    pub fn writes(&self) -> usize {
        self.created.len() + self.updated.len() + self.deleted.len()
    }
}

/// Where and as whom Bundles are written.
#[derive(Clone)]
pub struct BundleStore {
    client: Client,
    field_manager: String,
    gate: Option<Gate>,
}

impl std::fmt::Debug for BundleStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BundleStore")
            .field("field_manager", &self.field_manager)
            .finish_non_exhaustive()
    }
}

impl BundleStore {
    pub fn new(client: Client, field_manager: &str) -> Self {
        Self {
            client,
            field_manager: field_manager.to_owned(),
            gate: None,
        }
    }

    /// The store of a leader-elected writer: every write is sent only if `still_leading()`
    /// answers true right before it.
    pub fn gated(mut self, still_leading: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        self.gate = Some(std::sync::Arc::new(still_leading));
        self
    }

    /// Fails unless the writer still holds its claim.
    fn check(&self, namespace: &str, name: &str) -> Result<(), StoreError> {
        match &self.gate {
            Some(still_leading) if !still_leading() => Err(StoreError::NotLeading {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            }),
            _ => Ok(()),
        }
    }

    /// Makes the Bundles labelled `fleet.cattle.io/repo-name=<repo>` in `namespace` exactly
    /// `desired`: each gets the label, `owner` (if any) and the content hash.
    pub async fn sync(
        &self,
        namespace: &str,
        repo: &str,
        owner: Option<OwnerReference>,
        desired: Vec<Bundle>,
    ) -> Result<SyncReport, StoreError> {
        self.sync_labelled(namespace, REPO_NAME, repo, owner, desired)
            .await
    }

    /// [`sync`](Self::sync) for Bundles of another source, labelled `label=value` (a HelmOp's
    /// Bundle carries `fleet.cattle.io/fleet-helm-name`).
    pub async fn sync_labelled(
        &self,
        namespace: &str,
        label: &str,
        value: &str,
        owner: Option<OwnerReference>,
        desired: Vec<Bundle>,
    ) -> Result<SyncReport, StoreError> {
        let api: Api<Bundle> = Api::namespaced(self.client.clone(), namespace);
        let error = |action, name: &str| {
            let namespace = namespace.to_owned();
            let name = name.to_owned();
            move |source| StoreError::Api {
                action,
                namespace,
                name,
                source: Box::new(source),
            }
        };
        let selector = format!("{label}={value}");
        let existing: BTreeMap<String, Option<String>> = api
            .list_metadata(&ListParams::default().labels(&selector))
            .await
            .map_err(error("listing", "*"))?
            .items
            .into_iter()
            .filter_map(|meta| {
                let hash = meta
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(CONTENT_HASH).cloned());
                meta.metadata.name.map(|name| (name, hash))
            })
            .collect();

        let mut report = SyncReport::default();
        let params = PatchParams::apply(&self.field_manager).force();
        let mut wanted = Vec::with_capacity(desired.len());
        for mut bundle in desired {
            let name = bundle.metadata.name.clone().unwrap_or_default();
            bundle.metadata.namespace = Some(namespace.to_owned());
            bundle
                .metadata
                .labels
                .get_or_insert_with(BTreeMap::new)
                .insert(label.to_owned(), value.to_owned());
            bundle.metadata.owner_references = owner.clone().map(|o| vec![o]);
            let hash = content_hash(&bundle);
            bundle
                .metadata
                .annotations
                .get_or_insert_with(BTreeMap::new)
                .insert(CONTENT_HASH.to_owned(), hash.clone());
            wanted.push(name.clone());
            match existing.get(&name) {
                Some(Some(old)) if *old == hash => {
                    report.unchanged.push(name);
                    continue;
                }
                Some(_) => report.updated.push(name.clone()),
                None => report.created.push(name.clone()),
            }
            self.check(namespace, &name)?;
            api.patch(&name, &params, &Patch::Apply(&bundle))
                .await
                .map_err(error("applying", &name))?;
        }
        for name in existing.keys().filter(|name| !wanted.contains(name)) {
            self.check(namespace, name)?;
            match api.delete(name, &DeleteParams::background()).await {
                Ok(_) => report.deleted.push(name.clone()),
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(source) => return Err(error("deleting", name)(source)),
            }
        }
        Ok(report)
    }
}

/// The hex SHA-256 of the Bundle as it would be written, without the hash itself.
pub fn content_hash(bundle: &Bundle) -> String {
    let mut copy = bundle.clone();
    if let Some(annotations) = copy.metadata.annotations.as_mut() {
        annotations.remove(CONTENT_HASH);
        if annotations.is_empty() {
            copy.metadata.annotations = None;
        }
    }
    copy.metadata.resource_version = None;
    copy.status = None;
    let json = serde_json::to_vec(&copy).unwrap_or_default();
    Sha256::digest(json)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use fleet_api::BundleSpec;

    use super::*;

    #[test]
    fn the_hash_ignores_itself_and_sees_the_spec() {
        let mut bundle = Bundle::new("b", BundleSpec::default());
        let first = content_hash(&bundle);
        bundle
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(CONTENT_HASH.to_owned(), first.clone());
        assert_eq!(content_hash(&bundle), first);
        bundle.spec.paused = true;
        assert_ne!(content_hash(&bundle), first);
    }
}
