//! Roll-ups follow deletions: a BundleDeployment removed (its Bundle no longer targets the
//! cluster) is no longer counted in its Cluster's status, with nothing else happening that
//! would look at the Cluster again (no agent, no other change).

mod support;

use fleet_api::Bundle;
use kube::Api;
use kube::api::{Patch, PatchParams};
use support::{
    Controller, NS, bundle, clusters_in_default_group, create, plane, wait_bds, wait_rollups_of,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pruned_bundle_deployment_leaves_its_clusters_roll_up() {
    let plane = plane().await;
    let client = plane.client();
    let work = tempfile::tempdir().expect("tempdir");
    let _controller = Controller::start(&plane, "controller", work.path());
    clusters_in_default_group(&client, 3).await;
    create::<Bundle>(&client, &bundle("app")).await;
    wait_bds(&client, 3).await;
    wait_rollups_of(&client, &[1, 1, 1]).await;

    let narrowed = serde_json::json!({"spec": {"targets": [{"clusterName": "c0"}]}});
    Api::<Bundle>::namespaced(client.clone(), NS)
        .patch("app", &PatchParams::default(), &Patch::Merge(narrowed))
        .await
        .expect("patch");
    wait_bds(&client, 1).await;
    wait_rollups_of(&client, &[1, 0, 0]).await;
}
