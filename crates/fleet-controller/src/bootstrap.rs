//! Fleet's bootstrap: the `fleet-local` workspace with the Cluster `local` (the management
//! cluster itself, labelled `name=local`) and the ClusterGroup `default` selecting it, so
//! that GitRepos in `fleet-local` deploy to the management cluster out of the box. Created
//! once if missing; never overwritten (users may edit them).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::context::Context;

use fleet_api::{Cluster, ClusterGroup, ClusterGroupSpec, ClusterSpec};
use fleet_runtime::{WriteError, Writer};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::ObjectMeta;
use kube::{Api, Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The workspace of the management cluster.
pub const LOCAL_NAMESPACE: &str = "fleet-local";

/// The key whose claim the bootstrap is written under (the Cluster `local`).
pub const CLAIM_KEY: &str = "fleet-local/local";

/// Why the bootstrap did not finish (retried).
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("reading {what}: {source}")]
    Read { what: String, source: kube::Error },
    #[error(transparent)]
    Write(#[from] WriteError),
}

/// Creates what is missing of the `fleet-local` workspace (nothing is written when it all
/// exists).
pub async fn bootstrap_local(writer: &Writer, client: &Client) -> Result<(), BootstrapError> {
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(LOCAL_NAMESPACE.to_owned()),
            ..ObjectMeta::default()
        },
        ..Default::default()
    };
    ensure(writer, &Api::all(client.clone()), &namespace).await?;
    let mut cluster = Cluster::new("local", ClusterSpec::default());
    cluster.metadata.namespace = Some(LOCAL_NAMESPACE.to_owned());
    cluster.metadata.labels = Some(BTreeMap::from([("name".to_owned(), "local".to_owned())]));
    let clusters = Api::namespaced(client.clone(), LOCAL_NAMESPACE);
    ensure(writer, &clusters, &cluster).await?;
    let mut group = ClusterGroup::new(
        "default",
        ClusterGroupSpec {
            selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([("name".to_owned(), "local".to_owned())])),
                ..LabelSelector::default()
            }),
        },
    );
    group.metadata.namespace = Some(LOCAL_NAMESPACE.to_owned());
    let groups = Api::namespaced(client.clone(), LOCAL_NAMESPACE);
    ensure(writer, &groups, &group).await?;
    Ok(())
}

/// Bootstraps until it succeeds, under the claim of [`CLAIM_KEY`] (right after an install the
/// CRDs may not be served yet; with dynamic shards, the replica holding that key's shard does
/// it), or until `stop`.
pub async fn run(ctx: Arc<Context>, client: Client, stop: CancellationToken) {
    let mut delay = Duration::from_secs(1);
    loop {
        let writer = ctx.writer_for(CLAIM_KEY);
        match bootstrap_local(&writer, &client).await {
            Ok(()) => return,
            Err(BootstrapError::Write(error)) if error.is_not_leading() => {
                tracing::debug!("the fleet-local workspace is another replica's to create");
            }
            Err(error) => {
                tracing::warn!(%error, retry_in = ?delay, "cannot create the fleet-local workspace yet");
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

/// Creates `object` unless it exists.
async fn ensure<K>(writer: &Writer, api: &Api<K>, object: &K) -> Result<(), BootstrapError>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + Debug,
{
    let name = object.meta().name.clone().unwrap_or_default();
    let existing = api
        .get_opt(&name)
        .await
        .map_err(|source| BootstrapError::Read {
            what: format!("{} {name}", K::kind(&())),
            source,
        })?;
    if existing.is_some() {
        return Ok(());
    }
    match writer.create(api, object).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_conflict() => Ok(()),
        Err(e) => Err(e.into()),
    }
}
