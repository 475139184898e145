//! helmops under the faults an operator's control plane goes through, on a real one (with a
//! real Helm repository): the API server frozen for longer than the Lease, killed and started
//! again on the same etcd, and etcd restarted. After each, both replicas still run (no restart
//! of their own), one of them leads, a new HelmOp gets its Bundle, and the Bundles written
//! before are not written again (they keep generation 1).

mod support;

use fleet_api::{Bundle, HelmOp};
use fleet_testkit::ManagedProcess;
use fleet_testkit::faults::{self, Fault};
use fleet_testkit::{wait_for, wait_role};
use kube::Api;
use kube::api::PostParams;
use support::{NS, WAIT, plane, replica, web_chart_repo, web_helmop};

/// Both replicas still run and one leads; HelmOp `name` gets its Bundle; the Bundles of
/// `before` kept generation 1.
async fn carried_on(
    client: &kube::Client,
    replicas: &mut [(&mut ManagedProcess, u16)],
    repo: &str,
    name: &str,
    before: &[&str],
) {
    let ports: Vec<u16> = replicas.iter().map(|(_, port)| *port).collect();
    let mut processes: Vec<&mut ManagedProcess> =
        replicas.iter_mut().map(|(p, _)| &mut **p).collect();
    faults::rode_out(&mut processes, &ports, WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", faults::logs(processes.iter().map(|p| &**p))));
    Api::<HelmOp>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &web_helmop(name, repo))
        .await
        .expect("create");
    let bundles: Api<Bundle> = Api::namespaced(client.clone(), NS);
    wait_for(&bundles, name, WAIT, |_| true)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{name}'s Bundle after the fault: {e}\n{}",
                faults::logs(processes.iter().map(|p| &**p))
            )
        });
    for earlier in before {
        let bundle = bundles.get(earlier).await.expect("written before");
        assert_eq!(
            bundle.metadata.generation,
            Some(1),
            "{earlier} not written again"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helmops_rides_out_a_frozen_or_restarted_api_server_and_an_etcd_restart() {
    let mut plane = plane().await;
    let client = plane.client();
    let work = tempfile::tempdir().expect("tempdir");
    let (_repo, server) = web_chart_repo().await;
    let url = server.url();
    let (mut a, a_port) = replica(&plane, work.path(), "a");
    wait_role(a_port, "leader", WAIT).await.expect("a leads");
    let (mut b, b_port) = replica(&plane, work.path(), "b");
    wait_role(b_port, "standby", WAIT)
        .await
        .expect("b stands by");
    carried_on(
        &client,
        &mut [(&mut a, a_port), (&mut b, b_port)],
        &url,
        "before",
        &[],
    )
    .await;

    let mut written = vec!["before".to_owned()];
    for fault in Fault::ALL {
        fault.inflict(&mut plane).await.expect("fault");
        let name = format!("after-{fault:?}").to_lowercase();
        let before: Vec<&str> = written.iter().map(String::as_str).collect();
        let replicas = &mut [(&mut a, a_port), (&mut b, b_port)];
        carried_on(&client, replicas, &url, &name, &before).await;
        written.push(name);
    }
}
