//! Dynamic shards on a real control plane: three fleet-controller replicas with `--shards 6`
//! (and a plan budget smaller than a Bundle) share the Bundles and Clusters; every Bundle reaches every cluster; each Bundle is
//! reconciled by the replica holding its shard only; a SIGKILLed replica's shards move to the
//! others; a replica frozen (SIGSTOP) past its lease writes nothing when it resumes. Each
//! replica caches only its shards' Bundles and BundleDeployments (labelled with their Bundle's
//! and their Cluster's shard), and every Cluster's roll-up still counts all of its
//! BundleDeployments, also after shards moved.

mod support;

use fleet_api::sharding::{BUNDLE_SHARD, CLUSTER_SHARD};
use fleet_api::{Bundle, BundleDeployment};
use fleet_testkit::process::{SIGCONT, SIGSTOP};
use kube::Api;
use support::{
    Controller, NS, WAIT, bundle, clusters_in_default_group, create, plane, wait_bds,
    wait_rollups_of,
};

const BUNDLES: usize = 8;
const CLUSTERS: usize = 3;

async fn wait_covered(replicas: &[&Controller]) {
    let ports: Vec<u16> = replicas.iter().map(|r| r.admin_port).collect();
    // Lease 3 s: a machine loaded enough to starve renewals makes shards move for a while.
    fleet_testkit::wait_shards_covered(&ports, 6, 2 * WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Waits until each of `bundles` Bundles is cached by one of `replicas` only (each labelled
/// with its shard, which the replicas' caches select by).
async fn wait_bundles_cached_once(replicas: &[&Controller], bundles: usize) {
    let series = "fleet_controller_cached_objects{resource=\"bundles\"}";
    fleet_testkit::eventually("each Bundle cached once", 2 * WAIT, WAIT / 100, || async {
        let mut cached = Vec::new();
        for replica in replicas {
            cached.push(replica.metric(series).await);
        }
        if cached.iter().sum::<f64>() == bundles as f64 {
            Ok(())
        } else {
            Err(format!("Bundles cached per replica: {cached:?}"))
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

/// Waits until every Cluster's roll-up counts `per_cluster` BundleDeployments.
async fn wait_rollups(client: &kube::Client, per_cluster: i64) {
    wait_rollups_of(client, &[per_cluster; CLUSTERS]).await;
}

/// Waits until no replica holds BundleDeployments planned and not yet written (the plan
/// budget's units all came back).
async fn wait_nothing_planned(replicas: &[&Controller]) {
    let series = "fleet_controller_planned_deployments";
    fleet_testkit::eventually("the plan budgets free", WAIT, WAIT / 100, || async {
        let mut planned = Vec::new();
        for replica in replicas {
            let metrics = fleet_testkit::http_get(replica.admin_port, "/metrics")
                .await
                .map_err(|e| e.to_string())?;
            if !metrics.contains(&format!("\n{series} ")) {
                return Err(format!("no {series} in the metrics"));
            }
            planned.push(replica.metric(series).await);
        }
        if planned.iter().all(|p| *p == 0.0) {
            Ok(())
        } else {
            Err(format!("planned per replica: {planned:?}"))
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundles_fan_out_under_their_shards_claims() {
    let plane = plane().await;
    let client = plane.client();
    let work = tempfile::tempdir().expect("tempdir");
    // A plan budget smaller than a Bundle's targets: each Bundle plans alone.
    let args = [
        "--shards=6".to_owned(),
        "--max-planned-deployments=2".to_owned(),
    ];
    let start = |name: &str| Controller::start_with(&plane, name, work.path(), &args);
    let (a, b, mut c) = (start("a"), start("b"), start("c"));
    wait_covered(&[&a, &b, &c]).await;
    clusters_in_default_group(&client, CLUSTERS).await;
    for i in 0..BUNDLES {
        create::<Bundle>(&client, &bundle(&format!("first-{i}"))).await;
    }
    wait_bds(&client, BUNDLES * CLUSTERS).await;
    // Each Bundle was reconciled by one replica: the `bundle` reconciles of the three add up
    // to at least the Bundles, and no replica reconciled them all (the work is spread).
    let series = "fleet_reconcile_duration_seconds_count{controller=\"bundle\"}";
    let mut counts = Vec::new();
    for replica in [&a, &b, &c] {
        counts.push(replica.metric(series).await);
    }
    assert!(
        counts.iter().filter(|n| **n > 0.0).count() >= 2,
        "spread: {counts:?}"
    );
    // Each BundleDeployment names its Bundle's and its Cluster's shard, which the replicas'
    // caches select by; the Cluster roll-ups, each from its own shard's cache, count them all.
    let bds = Api::<BundleDeployment>::all(client.clone())
        .list(&Default::default())
        .await
        .expect("list");
    for bd in &bds.items {
        let labels = bd.metadata.labels.clone().unwrap_or_default();
        for key in [BUNDLE_SHARD, CLUSTER_SHARD] {
            assert!(
                labels.get(key).is_some_and(|v| v.ends_with("-of-6")),
                "{key} on {:?}: {labels:?}",
                bd.metadata.name
            );
        }
    }
    wait_rollups(&client, BUNDLES as i64).await;
    wait_bundles_cached_once(&[&a, &b, &c], BUNDLES).await;
    wait_nothing_planned(&[&a, &b, &c]).await;

    // A replica is killed: its shards move, and new Bundles of them fan out.
    c.process.kill();
    wait_covered(&[&a, &b]).await;
    for i in 0..BUNDLES {
        create::<Bundle>(&client, &bundle(&format!("second-{i}"))).await;
    }
    wait_bds(&client, 2 * BUNDLES * CLUSTERS).await;
    wait_rollups(&client, 2 * BUNDLES as i64).await;
    wait_bundles_cached_once(&[&a, &b], 2 * BUNDLES).await;
    wait_nothing_planned(&[&a, &b]).await;

    // A replica frozen past its lease: the other takes everything; resumed, it writes nothing.
    let before = b.metric("fleet_controller_writes_total").await;
    b.process.signal(SIGSTOP).expect("SIGSTOP");
    wait_covered(&[&a]).await;
    for i in 0..BUNDLES {
        create::<Bundle>(&client, &bundle(&format!("third-{i}"))).await;
    }
    wait_bds(&client, 3 * BUNDLES * CLUSTERS).await;
    // Everything done, roll-ups too, before b resumes: it finds nothing left to write.
    wait_rollups(&client, 3 * BUNDLES as i64).await;
    b.process.signal(SIGCONT).expect("SIGCONT");
    wait_covered(&[&a, &b]).await;
    // b's shards came back to it; everything it reconciles now is already in place.
    wait_bds(&client, 3 * BUNDLES * CLUSTERS).await;
    let bundles: Api<Bundle> = Api::namespaced(client.clone(), NS);
    assert_eq!(
        bundles
            .list(&Default::default())
            .await
            .expect("list")
            .items
            .len(),
        3 * BUNDLES
    );
    wait_rollups(&client, 3 * BUNDLES as i64).await;
    assert_eq!(
        b.metric("fleet_controller_writes_total").await,
        before,
        "the resumed replica wrote nothing"
    );
}

/// A controller without dynamic shards is replaced by sharded replicas: the BundleDeployments
/// it wrote carry no shard labels, yet the sharded caches see them (they select all but the
/// other shards' objects), so a Bundle whose targets changed meanwhile has its stale ones
/// pruned, and the rest are relabelled by their Bundle's owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployments_written_before_shards_are_seen_relabelled_and_pruned() {
    let plane = plane().await;
    let client = plane.client();
    let work = tempfile::tempdir().expect("tempdir");
    let single = Controller::start(&plane, "single", work.path());
    clusters_in_default_group(&client, CLUSTERS).await;
    for i in 0..4 {
        create::<Bundle>(&client, &bundle(&format!("before-{i}"))).await;
    }
    wait_bds(&client, 4 * CLUSTERS).await;
    drop(single);

    // While no controller runs, one Bundle comes to target c0 only.
    let bundles: Api<Bundle> = Api::namespaced(client.clone(), NS);
    let narrowed = serde_json::json!({"spec": {"targets": [{"clusterName": "c0"}]}});
    bundles
        .patch(
            "before-0",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(narrowed),
        )
        .await
        .expect("patch");

    let start =
        |name: &str| Controller::start_with(&plane, name, work.path(), &["--shards=6".to_owned()]);
    let (a, b) = (start("a"), start("b"));
    wait_covered(&[&a, &b]).await;
    wait_bds(&client, 3 * CLUSTERS + 1).await;
    let all: Api<BundleDeployment> = Api::all(client.clone());
    fleet_testkit::eventually(
        "every BundleDeployment relabelled",
        WAIT,
        WAIT / 100,
        || async {
            let unlabelled = all
                .list(&Default::default())
                .await
                .map_err(|e| e.to_string())?
                .items
                .iter()
                .filter(|bd| {
                    let labels = bd.metadata.labels.clone().unwrap_or_default();
                    !labels.contains_key(BUNDLE_SHARD) || !labels.contains_key(CLUSTER_SHARD)
                })
                .count();
            if unlabelled == 0 {
                Ok(())
            } else {
                Err(format!("{unlabelled} without shard labels"))
            }
        },
    )
    .await
    .expect("relabelled");
    // c0 keeps all four Bundles; the others lost before-0.
    wait_rollups_of(&client, &[4, 3, 3]).await;
}
