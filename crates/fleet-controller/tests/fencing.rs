//! The fencing drill on fleet-controller (one Lease, real control plane): the leader is frozen
//! (SIGSTOP) past its lease while Bundles are created, the standby takes over and fans them out,
//! and the resumed replica writes nothing, not even the work that queued up for it.

mod support;

use std::time::Duration;

use fleet_api::Bundle;
use support::{Controller, bundle, clusters_in_default_group, create, plane, wait_bds};

const CLUSTERS: usize = 3;
const LEASE: &str = "fleet-controller-leader-election-shard";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_leader_writes_nothing_after_another_took_over() {
    let plane = plane().await;
    let client = plane.client();
    let work = tempfile::tempdir().expect("tempdir");
    let a = Controller::start(&plane, "a", work.path());
    a.wait_role("leader").await;
    let b = Controller::start(&plane, "b", work.path());
    b.wait_role("standby").await;
    clusters_in_default_group(&client, CLUSTERS).await;
    create::<Bundle>(&client, &bundle("first")).await;
    wait_bds(&client, CLUSTERS).await;

    let pending = async {
        for i in 0..4 {
            create::<Bundle>(&client, &bundle(&format!("queued-{i}"))).await;
        }
    };
    let taken_over = wait_bds(&client, 5 * CLUSTERS);
    let fencing = fleet_testkit::fencing::drill(
        &a.process,
        LEASE,
        a.admin_port,
        b.admin_port,
        pending,
        taken_over,
        Duration::from_secs(3),
    )
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{e}\n{}\n---\n{}",
            a.process.log_tail(30),
            b.process.log_tail(30)
        )
    });
    println!("fencing: {fencing:?}");
    assert_eq!(
        fencing.writes_after,
        fencing.writes_before,
        "the resumed replica wrote nothing\n{}",
        a.process.log_tail(40)
    );
}
