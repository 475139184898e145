//! The fencing drill on the agent's deploying role (real upstream and downstream planes): the
//! replica holding it is frozen (SIGSTOP) past its lease while a Bundle is created for its
//! cluster, the other replica takes the role over and deploys it, and the resumed replica
//! writes nothing under the deploying Lease, not even the work that queued up for it.

mod support;

use std::time::Duration;

use fleet_api::Bundle;
use fleet_testkit::binaries::{Tool, ensure};
use fleet_testkit::wait_for;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use support::{Setup, WAIT, configmap_bundle, create};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_deploying_replica_writes_nothing_after_another_took_over() {
    const DEPLOY: &str = "fleet-agent";
    const MONITOR: &str = "fleet-agent-monitor";
    let setup = Setup::start().await;
    let (up, down) = (setup.upstream.client(), setup.downstream.client());
    let helm = ensure(Tool::Helm).expect("helm");
    // A long heartbeat: the deploying replica writes only when there is work.
    let (a, a_port) = setup.agent_with("agent-a", &helm, "1h");
    fleet_testkit::wait_leases(a_port, &[(DEPLOY, "leader"), (MONITOR, "leader")], WAIT)
        .await
        .unwrap_or_else(|e| panic!("a alone holds both roles: {e}\n{}", a.log_tail(30)));
    setup.registered(&a).await;
    let (b, b_port) = setup.agent_with("agent-b", &helm, "1h");
    fleet_testkit::wait_leases(b_port, &[(DEPLOY, "standby"), (MONITOR, "leader")], WAIT)
        .await
        .unwrap_or_else(|e| panic!("b took the monitoring role: {e}\n{}", b.log_tail(30)));
    create::<fleet_api::ClusterGroup>(&up, "metadata:\n  name: default\nspec:\n  selector: {}\n")
        .await;
    create::<Bundle>(&up, &configmap_bundle("first", "first", "hello")).await;
    let configmaps: Api<ConfigMap> = Api::namespaced(down.clone(), "apps");
    wait_for(&configmaps, "first", WAIT, |_| true)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", a.log_tail(30)));

    let second = configmap_bundle("second", "second", "hello");
    let pending = create::<Bundle>(&up, &second);
    let taken_over = async {
        wait_for(&configmaps, "second", WAIT, |_| true)
            .await
            .unwrap_or_else(|e| panic!("b deployed the queued work: {e}\n{}", b.log_tail(30)));
    };
    let fencing = fleet_testkit::fencing::drill(
        &a,
        DEPLOY,
        a_port,
        b_port,
        pending,
        taken_over,
        Duration::from_secs(3),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}\n---\n{}", a.log_tail(30), b.log_tail(30)));
    println!("fencing: {fencing:?}");
    assert_eq!(
        fencing.writes_after,
        fencing.writes_before,
        "the resumed replica wrote nothing under the deploying Lease\n{}",
        a.log_tail(40)
    );
}
