//! helmops with dynamic shards (`--shards`), on a real control plane with a real Helm
//! repository: two replicas share four shard Leases, every HelmOp's Bundle is written by
//! exactly one of them (their Bundle writes add up to one per HelmOp), and when one replica
//! is killed the other takes its shards and a new HelmOp still gets its Bundle.

mod support;

use fleet_api::{Bundle, HelmOp};
use fleet_testkit::{metric_sum, shards_held, wait_for, wait_shards_covered};
use kube::Api;
use kube::api::PostParams;
use support::{NS, WAIT, plane, replica_with, web_chart_repo, web_helmop};

const SHARDS: u32 = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helmops_are_spread_over_shards_and_written_once() {
    let plane = plane().await;
    let client = plane.client();
    let work = tempfile::tempdir().expect("tempdir");
    let (_repo, server) = web_chart_repo().await;
    let shards = format!("--shards={SHARDS}");
    let (a, a_port) = replica_with(&plane, work.path(), "a", &[&shards]);
    let (mut b, b_port) = replica_with(&plane, work.path(), "b", &[&shards]);
    wait_shards_covered(&[a_port, b_port], SHARDS, WAIT * 2)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}\n{}", a.log_tail(20), b.log_tail(20)));
    let held_by_a = shards_held(a_port).await.expect("a's shards");
    let held_by_b = shards_held(b_port).await.expect("b's shards");
    assert!(
        !held_by_a.is_empty() && !held_by_b.is_empty(),
        "{held_by_a:?} / {held_by_b:?}"
    );

    let helmops: Api<HelmOp> = Api::namespaced(client.clone(), NS);
    let bundles: Api<Bundle> = Api::namespaced(client.clone(), NS);
    let names = ["one", "two", "three", "four", "five", "six"];
    for name in names {
        helmops
            .create(&PostParams::default(), &web_helmop(name, &server.url()))
            .await
            .expect("create");
    }
    for name in names {
        wait_for(&bundles, name, WAIT, |_| true)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}\n{}\n{}", a.log_tail(20), b.log_tail(20)));
    }
    let writes = |port| metric_sum(port, "fleet_api_writes_total", "kind=\"Bundle\"");
    let total = writes(a_port).await.unwrap_or_default() + writes(b_port).await.unwrap_or_default();
    assert_eq!(
        total,
        names.len() as f64,
        "one Bundle write per HelmOp, by one replica"
    );

    // b dies: a takes every shard, and a new HelmOp still gets its Bundle.
    b.kill();
    wait_shards_covered(&[a_port], SHARDS, WAIT * 2)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", a.log_tail(20)));
    helmops
        .create(&PostParams::default(), &web_helmop("seven", &server.url()))
        .await
        .expect("create");
    wait_for(&bundles, "seven", WAIT, |_| true)
        .await
        .unwrap_or_else(|e| panic!("seven: {e}\n{}", a.log_tail(20)));
}
