//! Namespaces the controller creates: cluster namespaces (annotated with their cluster) and
//! its own, labelled `fleet.cattle.io/managed=true`.

use std::collections::BTreeMap;

use fleet_api::labels::{CLUSTER, CLUSTER_NAMESPACE, MANAGED};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::ObjectMeta;
use kube::{Api, Resource};

use crate::context::Context;
use crate::error::Error;

/// Creates a cluster namespace if it is missing, annotated with the cluster it belongs to;
/// `owner` (the Cluster, or a BundleDeployment with its cluster labels) names it.
pub async fn ensure<K: Resource>(ctx: &Context, name: &str, owner: &K) -> Result<(), Error> {
    let labels = owner.meta().labels.clone().unwrap_or_default();
    let annotations = BTreeMap::from([
        (
            CLUSTER.to_owned(),
            labels
                .get(CLUSTER)
                .cloned()
                .unwrap_or_else(|| owner.meta().name.clone().unwrap_or_default()),
        ),
        (
            CLUSTER_NAMESPACE.to_owned(),
            labels
                .get(CLUSTER_NAMESPACE)
                .cloned()
                .unwrap_or_else(|| owner.meta().namespace.clone().unwrap_or_default()),
        ),
    ]);
    create(ctx, name, annotations).await
}

/// Creates a namespace labelled `fleet.cattle.io/managed=true` if it is missing.
pub async fn create(
    ctx: &Context,
    name: &str,
    annotations: BTreeMap<String, String>,
) -> Result<(), Error> {
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(BTreeMap::from([(MANAGED.to_owned(), "true".to_owned())])),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    let api = Api::<Namespace>::all(ctx.client.clone());
    match ctx.writer().create(&api, &namespace).await {
        Ok(_) => {
            ctx.metrics.writes.inc();
        }
        Err(e) if e.is_conflict() => {}
        Err(e) => return Err(e.into()),
    }
    Ok(())
}
