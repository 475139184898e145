//! fleet-controller under the faults an operator's control plane goes through, on a real one:
//! the API server frozen for longer than the Lease, killed and started again on the same etcd,
//! and etcd restarted. After each, both replicas still run (no restart of their own), one of
//! them leads, a new Bundle is deployed, and the Bundles deployed before are not deployed
//! again (their BundleDeployments keep their generation).

mod support;

use std::time::Duration;

use fleet_api::{BundleDeployment, Cluster};
use fleet_testkit::process::{SIGCONT, SIGSTOP};
use fleet_testkit::wait_for;
use kube::Api;
use support::*;

/// Longer than the test Lease (3 s) and its renew deadline (2 s).
const FREEZE: Duration = Duration::from_secs(10);
const RESTART: Duration = Duration::from_secs(60);

/// Both replicas still run and one of them leads; `bundle` is deployed to `c0`, and the
/// BundleDeployments before it kept generation 1.
async fn carried_on(
    client: &kube::Client,
    replicas: &mut [&mut Controller],
    bundle: &str,
    before: &[&str],
) {
    let logs = |replicas: &[&mut Controller]| -> String {
        replicas
            .iter()
            .map(|r| format!("--- {} ---\n{}", r.process.name(), r.process.log_tail(25)))
            .collect()
    };
    for replica in replicas.iter_mut() {
        if let Err(e) = replica.process.check_running() {
            panic!("a replica did not ride out the fault: {e}");
        }
    }
    let ports: Vec<u16> = replicas.iter().map(|r| r.admin_port).collect();
    fleet_testkit::wait_one_leader(&ports, WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", logs(replicas)));
    create::<fleet_api::Bundle>(client, &support::bundle(bundle)).await;
    wait_for(&bds(client, "c0"), bundle, WAIT, |_| true)
        .await
        .unwrap_or_else(|e| panic!("{bundle} deployed after the fault: {e}\n{}", logs(replicas)));
    let deployments: Api<BundleDeployment> = bds(client, "c0");
    for name in before {
        let bd = deployments.get(name).await.expect("deployed before");
        assert_eq!(bd.metadata.generation, Some(1), "{name} not deployed again");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_rides_out_a_frozen_or_restarted_api_server_and_an_etcd_restart() {
    let mut plane = plane().await;
    let client = plane.client();
    let work = tempfile::tempdir().expect("tempdir");
    let mut a = Controller::start(&plane, "controller-a", work.path());
    a.wait_role("leader").await;
    let mut b = Controller::start(&plane, "controller-b", work.path());
    b.wait_role("standby").await;
    clusters_in_default_group(&client, 1).await;
    wait_for(
        &Api::<Cluster>::namespaced(client.clone(), NS),
        "c0",
        WAIT,
        |c| c.status.is_some(),
    )
    .await
    .expect("cluster seen");
    carried_on(&client, &mut [&mut a, &mut b], "before", &[]).await;

    let apiserver = plane.process_mut("kube-apiserver").expect("kube-apiserver");
    apiserver.signal(SIGSTOP).expect("freeze the API server");
    tokio::time::sleep(FREEZE).await;
    let apiserver = plane.process_mut("kube-apiserver").expect("kube-apiserver");
    apiserver.signal(SIGCONT).expect("resume the API server");
    carried_on(&client, &mut [&mut a, &mut b], "after-freeze", &["before"]).await;

    plane
        .process_mut("kube-apiserver")
        .expect("kube-apiserver")
        .kill();
    tokio::time::sleep(Duration::from_secs(3)).await;
    plane
        .restart("kube-apiserver", RESTART)
        .await
        .expect("API server back");
    carried_on(
        &client,
        &mut [&mut a, &mut b],
        "after-restart",
        &["before", "after-freeze"],
    )
    .await;

    plane.restart("etcd", RESTART).await.expect("etcd back");
    carried_on(
        &client,
        &mut [&mut a, &mut b],
        "after-etcd",
        &["before", "after-freeze", "after-restart"],
    )
    .await;
}
