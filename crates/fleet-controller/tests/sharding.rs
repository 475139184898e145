//! Fleet's static sharding on a real control plane: the unsharded controller and a shard's
//! controller side by side, each electing through its own Lease; a Bundle labelled
//! `fleet.cattle.io/shard-ref` is handled by that shard only, an unlabelled one by the
//! unsharded controller only, one naming a shard nobody runs by nobody.

mod support;

use fleet_api::{Bundle, BundleDeployment, Cluster, ClusterGroup};
use fleet_testkit::wait_for;
use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client, ResourceExt};
use support::{Controller, WAIT, bds, create, plane};

const LEASE: &str = "fleet-controller-leader-election-shard";

fn bundle(name: &str, shard: Option<&str>) -> String {
    let labels = shard
        .map(|s| format!("  labels:\n    fleet.cattle.io/shard-ref: {s}\n"))
        .unwrap_or_default();
    format!("metadata:\n  name: {name}\n{labels}spec:\n  targets:\n  - clusterGroup: default\n")
}

async fn holder(client: &Client, lease: &str) -> Option<String> {
    Api::<Lease>::namespaced(client.clone(), "default")
        .get_opt(lease)
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labelled_bundles_are_handled_by_their_shard_only() {
    let plane = plane().await;
    let client = plane.client();
    let work = tempfile::tempdir().expect("tempdir");
    let main = Controller::start(&plane, "main", work.path());
    let eu = Controller::start_with(&plane, "eu", work.path(), &["--shard-id=eu".to_owned()]);
    main.wait_role("leader").await;
    eu.wait_role("leader").await;
    assert_eq!(holder(&client, LEASE).await.as_deref(), Some("main"));
    assert_eq!(
        holder(&client, &format!("{LEASE}-eu")).await.as_deref(),
        Some("eu"),
        "the shard elects through Fleet's Lease name for it"
    );
    create::<Cluster>(&client, "metadata:\n  name: c1\nspec: {}\n").await;
    create::<ClusterGroup>(
        &client,
        "metadata:\n  name: default\nspec:\n  selector: {}\n",
    )
    .await;
    create::<Bundle>(&client, &bundle("nobody", Some("us"))).await;
    create::<Bundle>(&client, &bundle("plain", None)).await;
    create::<Bundle>(&client, &bundle("eu-app", Some("eu"))).await;
    let deployments = bds(&client, "c1");
    wait_for(&deployments, "plain", WAIT, |_| true)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", main.process.log_tail(30)));
    let eu_bd = wait_for(&deployments, "eu-app", WAIT, |_| true)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", eu.process.log_tail(30)));
    assert_eq!(
        eu_bd
            .labels()
            .get("fleet.cattle.io/shard-ref")
            .map(String::as_str),
        Some("eu"),
        "the label reaches the BundleDeployment"
    );
    // Each Bundle's status is rolled up by its own shard's replica.
    let bundles: Api<Bundle> = Api::namespaced(client.clone(), support::NS);
    for name in ["plain", "eu-app"] {
        wait_for(&bundles, name, WAIT, |b| {
            b.status
                .as_ref()
                .is_some_and(|s| s.summary.desired_ready == 1)
        })
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    assert!(
        deployments.get_opt("nobody").await.expect("read").is_none(),
        "a shard nobody runs is handled by nobody"
    );

    let reconciles = "fleet_reconcile_duration_seconds_count{controller=\"bundle\"}";
    assert!(
        eu.metric(reconciles).await >= 1.0,
        "reconciles are observed"
    );

    // Without the shard's replicas, its Bundles wait; the unsharded controller goes on.
    drop(eu);
    create::<Bundle>(&client, &bundle("eu-two", Some("eu"))).await;
    create::<Bundle>(&client, &bundle("plain-two", None)).await;
    wait_for(&deployments, "plain-two", WAIT, |_| true)
        .await
        .expect("the unsharded controller goes on");
    assert!(deployments.get_opt("eu-two").await.expect("read").is_none());
    let eu = Controller::start_with(&plane, "eu-2", work.path(), &["--shard-id=eu".to_owned()]);
    wait_for(&deployments, "eu-two", WAIT, |_| true)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "the shard's new replica catches up: {e}\n{}",
                eu.process.log_tail(30)
            )
        });
    let nobody: Option<BundleDeployment> = deployments.get_opt("nobody").await.expect("read");
    assert!(nobody.is_none());
}
