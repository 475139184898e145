//! The fencing drill on helmops (real control plane, real Helm repository): the leader is
//! frozen (SIGSTOP) past its lease while HelmOps are created for it, the standby takes over
//! and writes their Bundles, and the resumed replica writes nothing, not even the work that
//! queued up for it while it was frozen.

mod support;

use std::time::Duration;

use fleet_api::{Bundle, HelmOp};
use fleet_testkit::{wait_for, wait_role};
use kube::Api;
use kube::api::PostParams;
use support::{NS, WAIT, plane, replica, web_chart_repo, web_helmop};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_leader_writes_nothing_after_another_took_over() {
    let plane = plane().await;
    let client = plane.client();
    let work = tempfile::tempdir().expect("tempdir");
    let (_repo, server) = web_chart_repo().await;

    let (a, a_port) = replica(&plane, work.path(), "a");
    wait_role(a_port, "leader", WAIT).await.expect("a leads");
    let (b, b_port) = replica(&plane, work.path(), "b");
    wait_role(b_port, "standby", WAIT)
        .await
        .expect("b stands by");
    let helmops: Api<HelmOp> = Api::namespaced(client.clone(), NS);
    let bundles: Api<Bundle> = Api::namespaced(client.clone(), NS);
    helmops
        .create(&PostParams::default(), &web_helmop("first", &server.url()))
        .await
        .expect("create");
    wait_for(&bundles, "first", WAIT, |_| true)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", a.log_tail(20)));

    let names = ["second", "third", "fourth"];
    let pending = async {
        for name in names {
            helmops
                .create(&PostParams::default(), &web_helmop(name, &server.url()))
                .await
                .expect("create");
        }
    };
    let taken_over = async {
        for name in names {
            wait_for(&bundles, name, WAIT, |_| true)
                .await
                .unwrap_or_else(|e| panic!("{name}: {e}\n{}", b.log_tail(20)));
        }
    };
    let fencing = fleet_testkit::fencing::drill(
        &a,
        "fleet-helmops-leader-election-shard",
        a_port,
        b_port,
        pending,
        taken_over,
        Duration::from_secs(2),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}\n---\n{}", a.log_tail(20), b.log_tail(20)));
    println!("fencing: {fencing:?}");
    assert_eq!(
        fencing.writes_after,
        fencing.writes_before,
        "the resumed replica wrote nothing\n{}",
        a.log_tail(30)
    );
}
