//! The agent's two roles on real control planes (upstream and downstream): deploying and
//! monitoring on different replicas, drift seen by one and corrected by the other, each role
//! moving when its holder dies or a replica joins.

mod support;

use fleet_api::Bundle;
use fleet_testkit::wait_for;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{Patch, PatchParams};
use support::{Setup, WAIT, configmap_bundle, create};

/// The deploying and monitoring roles sit on different replicas, and the corrections the
/// monitoring replica asks for are made by the deploying one; either role moves to the other
/// replica when its holder dies, and back when a replica joins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_split_deploying_and_monitoring_and_one_alone_holds_both() {
    const DEPLOY: &str = "fleet-agent";
    const MONITOR: &str = "fleet-agent-monitor";
    let both = [(DEPLOY, "leader"), (MONITOR, "leader")];
    let setup = Setup::start().await;
    let (up, down) = (setup.upstream.client(), setup.downstream.client());
    let (a, a_port) = setup.agent("agent-a");
    fleet_testkit::wait_leases(a_port, &both, WAIT)
        .await
        .unwrap_or_else(|e| panic!("a alone holds both roles: {e}\n{}", a.log_tail(30)));
    setup.registered(&a).await;
    let (mut b, b_port) = setup.agent("agent-b");
    fleet_testkit::wait_leases(b_port, &[(DEPLOY, "standby"), (MONITOR, "leader")], WAIT)
        .await
        .unwrap_or_else(|e| panic!("b took the monitoring role: {e}\n{}", b.log_tail(30)));
    fleet_testkit::wait_leases(a_port, &[(DEPLOY, "leader"), (MONITOR, "standby")], WAIT)
        .await
        .expect("a handed monitoring over and kept deploying");
    let series = |lease: &str| format!("fleet_leader_is_leader{{lease=\"{lease}\"}}");
    assert_eq!(fleet_testkit::metric(b_port, &series(MONITOR)).await, 1.0);
    assert_eq!(fleet_testkit::metric(b_port, &series(DEPLOY)).await, 0.0);

    // Drift seen by b (monitoring) is put back by a (deploying).
    create::<fleet_api::ClusterGroup>(&up, "metadata:\n  name: default\nspec:\n  selector: {}\n")
        .await;
    let mut guarded = configmap_bundle("guarded", "guarded", "original");
    guarded.push_str("  correctDrift:\n    enabled: true\n");
    create::<Bundle>(&up, &guarded).await;
    let configmaps: Api<ConfigMap> = Api::namespaced(down.clone(), "apps");
    let greeting = |value: &'static str| {
        move |c: &ConfigMap| {
            c.data
                .as_ref()
                .and_then(|d| d.get("greeting"))
                .map(String::as_str)
                == Some(value)
        }
    };
    wait_for(&configmaps, "guarded", WAIT, greeting("original"))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", a.log_tail(30)));
    let edit = Patch::Merge(serde_json::json!({"data": {"greeting": "edited by hand"}}));
    configmaps
        .patch("guarded", &PatchParams::default(), &edit)
        .await
        .expect("edit");
    wait_for(&configmaps, "guarded", WAIT, greeting("edited by hand"))
        .await
        .expect("edit seen");
    wait_for(&configmaps, "guarded", WAIT, greeting("original"))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "drift corrected: {e}\n{}\n{}",
                a.log_tail(30),
                b.log_tail(30)
            )
        });
    assert!(
        a.log_tail(200).contains("correcting drift")
            && !b.log_tail(200).contains("correcting drift"),
        "the deploying replica corrected the drift"
    );

    // Each role's reconciles are observed where they run.
    let reconciles = |controller: &str| {
        format!("fleet_reconcile_duration_seconds_count{{controller=\"{controller}\"}}")
    };
    assert!(fleet_testkit::metric(a_port, &reconciles("bundledeployment-deploy")).await >= 1.0);
    assert!(fleet_testkit::metric(b_port, &reconciles("bundledeployment-monitor")).await >= 1.0);

    // The monitoring replica dies: the deploying one monitors too.
    b.kill();
    fleet_testkit::wait_leases(a_port, &both, WAIT)
        .await
        .unwrap_or_else(|e| panic!("a took monitoring back: {e}\n{}", a.log_tail(30)));
    // A replica joins again: it takes monitoring, deploying stays where it is.
    let (c, c_port) = setup.agent("agent-c");
    fleet_testkit::wait_leases(c_port, &[(DEPLOY, "standby"), (MONITOR, "leader")], WAIT)
        .await
        .unwrap_or_else(|e| panic!("c took the monitoring role: {e}\n{}", c.log_tail(30)));
    fleet_testkit::wait_leases(a_port, &[(DEPLOY, "leader"), (MONITOR, "standby")], WAIT)
        .await
        .expect("a deploys only");
}
