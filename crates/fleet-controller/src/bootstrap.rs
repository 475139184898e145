//! Fleet's bootstrap: the `fleet-local` workspace with the Cluster `local` (the management
//! cluster itself, labelled `name=local`) and the ClusterGroup `default` selecting it, so
//! that GitRepos in `fleet-local` deploy to the management cluster out of the box. Created
//! once if missing; never overwritten (users may edit them).

use std::collections::BTreeMap;

use fleet_api::{Cluster, ClusterGroup, ClusterGroupSpec, ClusterSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

/// The workspace of the management cluster.
pub const LOCAL_NAMESPACE: &str = "fleet-local";

/// Creates what is missing of the `fleet-local` workspace.
pub async fn bootstrap_local(client: &Client) -> Result<(), kube::Error> {
    let namespace = k8s_openapi::api::core::v1::Namespace {
        metadata: ObjectMeta {
            name: Some(LOCAL_NAMESPACE.to_owned()),
            ..ObjectMeta::default()
        },
        ..Default::default()
    };
    ignore_exists(
        Api::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await,
    )?;
    let mut cluster = Cluster::new("local", ClusterSpec::default());
    cluster.metadata.namespace = Some(LOCAL_NAMESPACE.to_owned());
    cluster.metadata.labels = Some(BTreeMap::from([("name".to_owned(), "local".to_owned())]));
    ignore_exists(
        Api::namespaced(client.clone(), LOCAL_NAMESPACE)
            .create(&PostParams::default(), &cluster)
            .await,
    )?;
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
    ignore_exists(
        Api::namespaced(client.clone(), LOCAL_NAMESPACE)
            .create(&PostParams::default(), &group)
            .await,
    )?;
    Ok(())
}

fn ignore_exists<T>(result: Result<T, kube::Error>) -> Result<(), kube::Error> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}
