//! fleet-controller under the faults an operator's control plane goes through, on a real one:
//! the API server frozen for longer than the Lease, killed and started again on the same etcd,
//! and etcd restarted. After each, both replicas still run (no restart of their own), one of
//! them leads, a new Bundle is deployed, and the Bundles deployed before are not deployed
//! again (their BundleDeployments keep their generation).

mod support;

use fleet_api::{BundleDeployment, Cluster};
use fleet_testkit::ManagedProcess;
use fleet_testkit::faults::{self, Fault};
use fleet_testkit::wait_for;
use kube::Api;
use support::*;

/// Both replicas still run and one of them leads; `bundle` is deployed to `c0`, and the
/// BundleDeployments before it kept generation 1.
async fn carried_on(
    client: &kube::Client,
    replicas: &mut [&mut Controller],
    bundle: &str,
    before: &[&str],
) {
    let ports: Vec<u16> = replicas.iter().map(|r| r.admin_port).collect();
    let mut processes: Vec<&mut ManagedProcess> =
        replicas.iter_mut().map(|r| &mut r.process).collect();
    faults::rode_out(&mut processes, &ports, WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", faults::logs(processes.iter().map(|p| &**p))));
    create::<fleet_api::Bundle>(client, &support::bundle(bundle)).await;
    wait_for(&bds(client, "c0"), bundle, WAIT, |_| true)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{bundle} deployed after the fault: {e}\n{}",
                faults::logs(processes.iter().map(|p| &**p))
            )
        });
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

    let mut deployed = vec!["before".to_owned()];
    for fault in Fault::ALL {
        fault.inflict(&mut plane).await.expect("fault");
        let bundle = format!("after-{fault:?}").to_lowercase();
        let before: Vec<&str> = deployed.iter().map(String::as_str).collect();
        carried_on(&client, &mut [&mut a, &mut b], &bundle, &before).await;
        deployed.push(bundle);
    }
}
