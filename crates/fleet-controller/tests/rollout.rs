//! fleet-controller on a real control plane, targeting beyond a bundle's own namespace and
//! rolling changes out: a canary partition first, BundleNamespaceMappings.

mod support;

use fleet_api::naming::cluster_namespace;
use fleet_api::{Bundle, BundleDeployment, Cluster};
use fleet_testkit::{wait_deleted, wait_for};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use support::*;

/// A canary partition first: the other clusters get a change only once the canary runs it
/// and is ready; until then they keep their deployment and have the new one staged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_waits_for_its_canary_partition() {
    let plane = plane().await;
    let client = plane.client();
    let work = tempfile::tempdir().expect("tempdir");
    let controller = Controller::start(&plane, "controller-0", work.path());
    let logs = || controller.process.log_tail(40);
    for (name, env) in [("canary", "canary"), ("p1", "prod"), ("p2", "prod")] {
        create::<Cluster>(
            &client,
            &format!("metadata:\n  name: {name}\n  labels:\n    env: {env}\nspec: {{}}\n"),
        )
        .await;
    }
    let bundle = |version: &str| {
        format!(
            "metadata:\n  name: app\nspec:\n  rolloutStrategy:\n    partitions:\n    - name: canary\n      maxUnavailable: 0\n      clusterSelector:\n        matchLabels:\n          env: canary\n  resources:\n  - name: cm.yaml\n    content: 'kind: ConfigMap\\nversion: {version}'\n  targets:\n  - clusterSelector: {{}}\n"
        )
    };
    create::<Bundle>(&client, &bundle("1")).await;
    let deployed = |bd: &BundleDeployment| bd.spec.deployment_id.clone();

    // First the canary alone; the others wait with the deployment staged.
    let canary = wait_for(&bds(&client, "canary"), "app", WAIT, |bd| {
        deployed(bd).is_some()
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    let v1 = deployed(&canary);
    let p1 = wait_for(&bds(&client, "p1"), "app", WAIT, |_| true)
        .await
        .expect("p1 staged");
    assert_eq!(deployed(&p1), None, "held back");
    assert_eq!(p1.spec.staged_deployment_id, v1);
    let bundles: Api<Bundle> = Api::namespaced(client.clone(), NS);
    let status = wait_for(&bundles, "app", WAIT, |b| {
        b.status
            .as_ref()
            .is_some_and(|s| s.partition_status.len() == 2)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    let partitions = status.status.expect("status").partition_status;
    assert_eq!(partitions[0].name.as_deref(), Some("canary"));
    assert_eq!(
        (partitions[1].name.as_deref(), partitions[1].count),
        (Some("All"), 2)
    );

    // The canary's agent reports it applied and ready: the others follow.
    report_deployed(&client, &canary).await;
    for cluster in ["p1", "p2"] {
        let bd = wait_for(&bds(&client, cluster), "app", WAIT, |bd| deployed(bd) == v1)
            .await
            .unwrap_or_else(|e| panic!("{cluster}: {e}\n{}", logs()));
        report_deployed(&client, &bd).await;
    }

    // A change: again the canary first, the others stay on v1 (OutOfSync) until it is ready.
    bundles
        .patch(
            "app",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": yaml::<Bundle>(&bundle("2")).spec})),
        )
        .await
        .expect("update bundle");
    let canary = wait_for(&bds(&client, "canary"), "app", WAIT, |bd| {
        deployed(bd).is_some() && deployed(bd) != v1
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    let v2 = deployed(&canary);
    let p2 = wait_for(&bds(&client, "p2"), "app", WAIT, |bd| {
        bd.spec.staged_deployment_id == v2
    })
    .await
    .expect("p2 staged");
    assert_eq!(
        deployed(&p2),
        v1,
        "keeps running v1 while the canary is not ready"
    );
    wait_for(&bundles, "app", WAIT, |b| {
        b.status
            .as_ref()
            .is_some_and(|s| s.summary.out_of_sync == 2)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    report_deployed(&client, &canary).await;
    for cluster in ["p1", "p2"] {
        wait_for(&bds(&client, cluster), "app", WAIT, |bd| deployed(bd) == v2)
            .await
            .unwrap_or_else(|e| panic!("{cluster}: {e}\n{}", logs()));
    }
}

/// A BundleNamespaceMapping lets the bundles it selects target Clusters of the namespaces it
/// selects; deleting it takes them back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundle_namespace_mappings_open_other_namespaces_to_selected_bundles() {
    let plane = plane().await;
    let client = plane.client();
    let work = tempfile::tempdir().expect("tempdir");
    let controller = Controller::start(&plane, "controller-0", work.path());
    let logs = || controller.process.log_tail(40);
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &yaml("metadata:\n  name: team-a\n  labels:\n    fleet: shared\n"),
        )
        .await
        .expect("namespace");
    Api::<Cluster>::namespaced(client.clone(), "team-a")
        .create(
            &PostParams::default(),
            &yaml("metadata:\n  name: remote\nspec: {}\n"),
        )
        .await
        .expect("cluster");
    create::<Cluster>(&client, "metadata:\n  name: local\nspec: {}\n").await;
    for name in ["shared", "private"] {
        create::<Bundle>(
            &client,
            &format!("metadata:\n  name: {name}\n  labels:\n    share: {name}\nspec:\n  resources:\n  - name: cm.yaml\n    content: 'kind: ConfigMap'\n  targets:\n  - clusterSelector: {{}}\n"),
        )
        .await;
    }
    wait_for(&bds(&client, "local"), "private", WAIT, |_| true)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    create::<fleet_api::BundleNamespaceMapping>(
        &client,
        "apiVersion: fleet.cattle.io/v1alpha1\nkind: BundleNamespaceMapping\nmetadata:\n  name: share\nbundleSelector:\n  matchLabels:\n    share: shared\nnamespaceSelector:\n  matchLabels:\n    fleet: shared\n",
    )
    .await;
    let remote: Api<BundleDeployment> =
        Api::namespaced(client.clone(), &cluster_namespace("team-a", "remote"));
    wait_for(&remote, "shared", WAIT, |_| true)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    assert!(
        remote.get_opt("private").await.expect("get").is_none(),
        "a bundle the mapping does not select stays in its namespace"
    );
    Api::<fleet_api::BundleNamespaceMapping>::namespaced(client.clone(), NS)
        .delete("share", &Default::default())
        .await
        .expect("delete mapping");
    wait_deleted(&remote, "shared", WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
}
