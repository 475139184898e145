//! Writing a repository's Bundles to a cluster: create, update and prune, as `fleet apply`
//! does when it has no `-o`, and as gitjob (per GitRepo) and helmops (per HelmOp) do.
//!
//! What to write is decided by [`crate::inventory::plan`]: each Bundle carries a hash of what
//! was written ([`CONTENT_HASH`]), and a Bundle whose hash is unchanged is not written again, so re-reading an unchanged repository costs no API write.
//! Changed Bundles are server-side applied with the writer's field manager, so fields that
//! disappear from the repository disappear from the Bundle. Bundles labelled with the
//! repository's name that the repository no longer produces are deleted. Every write goes
//! through the store's [`Writer`], which checks its claim right before each request.

use std::collections::BTreeMap;

use fleet_api::Bundle;
use fleet_api::labels::{CONTENT_HASH, REPO_NAME};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client};
use sha2::{Digest as _, Sha256};

use crate::gate::{WriteError, Writer};
use crate::inventory::{self, hash_of, stamp};

/// Why Bundles could not be written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The Bundles of the repository could not be listed.
    #[error("listing the Bundles of {namespace}/{selector}: {source}")]
    List {
        namespace: String,
        selector: String,
        #[source]
        source: Box<kube::Error>,
    },
    /// A write failed or was refused (the claim was gone: nothing more is written).
    #[error(transparent)]
    Write(#[from] WriteError),
}

impl StoreError {
    /// The writer's claim was gone right before a write.
    pub fn is_not_leading(&self) -> bool {
        matches!(self, Self::Write(error) if error.is_not_leading())
    }
}

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

/// Where Bundles are written, and under which claim.
#[derive(Clone)]
pub struct BundleStore {
    client: Client,
    writer: Writer,
}

impl std::fmt::Debug for BundleStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BundleStore")
            .field("writer", &self.writer)
            .finish_non_exhaustive()
    }
}

impl BundleStore {
    pub fn new(client: Client, writer: Writer) -> Self {
        Self { client, writer }
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
        let selector = format!("{label}={value}");
        let existing: BTreeMap<String, Option<String>> = api
            .list_metadata(&ListParams::default().labels(&selector))
            .await
            .map_err(|source| StoreError::List {
                namespace: namespace.to_owned(),
                selector: selector.clone(),
                source: Box::new(source),
            })?
            .items
            .into_iter()
            .filter_map(|meta| Some((meta.metadata.name.clone()?, hash_of(&meta.metadata))))
            .collect();
        let desired = desired.into_iter().map(|mut bundle| {
            bundle.metadata.namespace = Some(namespace.to_owned());
            bundle
                .metadata
                .labels
                .get_or_insert_with(BTreeMap::new)
                .insert(label.to_owned(), value.to_owned());
            bundle.metadata.owner_references = owner.clone().map(|o| vec![o]);
            let hash = content_hash(&bundle);
            stamp(&mut bundle.metadata, &hash);
            (
                bundle.metadata.name.clone().unwrap_or_default(),
                hash,
                bundle,
            )
        });
        let changes = inventory::plan(desired, &existing);
        let name_of = |bundle: &Bundle| bundle.metadata.name.clone().unwrap_or_default();
        let mut report = SyncReport {
            created: changes.create.iter().map(name_of).collect(),
            updated: changes.update.iter().map(name_of).collect(),
            unchanged: changes.unchanged,
            deleted: Vec::new(),
        };
        let params = PatchParams::apply(self.writer.manager()).force();
        for bundle in changes.create.iter().chain(&changes.update) {
            self.writer
                .patch(&api, &name_of(bundle), &params, &Patch::Apply(bundle))
                .await?;
        }
        for name in changes.prune {
            if self
                .writer
                .delete(&api, &name, &DeleteParams::background())
                .await?
            {
                report.deleted.push(name);
            }
        }
        Ok(report)
    }
}

/// One reconcile's writes under its object's claim: the writer, and the Bundle store that
/// writes through it (gitjob's GitRepos, helmops' HelmOps).
#[derive(Debug, Clone)]
pub struct Claimed {
    pub writer: Writer,
    pub store: BundleStore,
}

impl Claimed {
    /// The writes for the object `key` (`namespace/name`) under its claim; `None` when the
    /// object belongs to a shard another replica holds (its owner reconciles it).
    pub fn for_key(
        claims: &fleet_election::shards::Claims,
        gate: &crate::gate::WriteGate,
        client: &Client,
        key: &str,
    ) -> Option<Self> {
        let writer = gate.writer(claims.claim(key)?);
        Some(Self {
            store: BundleStore::new(client.clone(), writer.clone()),
            writer,
        })
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
