//! fleet-agent under control-plane faults, on real planes: each fault of
//! `fleet_testkit::faults::Fault::ALL` on the upstream cluster (where its BundleDeployments
//! are) and then on the downstream cluster (where it deploys and holds its Leases). After each,
//! both agent replicas still run (no restart of their own), a new Bundle is deployed
//! downstream, and nothing is deployed twice: every Helm release has exactly one revision.

mod support;

use fleet_api::Bundle;
use fleet_testkit::faults::{self, Fault};
use fleet_testkit::{ManagedProcess, wait_for};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use support::{Setup, WAIT, configmap_bundle, create};

/// Creates Bundle `name` (a ConfigMap `name`), waits until it is deployed downstream, and
/// checks that the `count` releases so far have one Helm revision each.
async fn deploy(setup: &Setup, agents: &mut [&mut ManagedProcess], name: &str, count: usize) {
    create::<Bundle>(
        &setup.upstream.client(),
        &configmap_bundle(name, name, "hello"),
    )
    .await;
    let configmaps: Api<ConfigMap> = Api::namespaced(setup.downstream.client(), "apps");
    wait_for(&configmaps, name, WAIT, |_| true)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{name} deployed: {e}\n{}",
                faults::logs(agents.iter().map(|p| &**p))
            )
        });
    let revisions: Vec<String> = Api::<Secret>::all(setup.downstream.client())
        .list(&ListParams::default().labels("owner=helm"))
        .await
        .expect("helm releases")
        .items
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    assert_eq!(
        revisions.len(),
        count,
        "one revision per release, none twice: {revisions:?}\n{}",
        faults::logs(agents.iter().map(|p| &**p))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_ride_out_faults_of_the_upstream_and_the_downstream_control_plane() {
    let mut setup = Setup::start().await;
    let (mut a, _) = setup.agent("agent-a");
    setup.registered(&a).await;
    let (mut b, _) = setup.agent("agent-b");
    create::<fleet_api::ClusterGroup>(
        &setup.upstream.client(),
        "metadata:\n  name: default\nspec:\n  selector: {}\n",
    )
    .await;
    deploy(&setup, &mut [&mut a, &mut b], "before", 1).await;
    let mut count = 1;
    for downstream in [false, true] {
        for fault in Fault::ALL {
            let plane = if downstream {
                &mut setup.downstream
            } else {
                &mut setup.upstream
            };
            fault.inflict(plane).await.expect("fault");
            let agents = &mut [&mut a, &mut b];
            for agent in agents.iter_mut() {
                agent
                    .check_running()
                    .unwrap_or_else(|e| panic!("{fault:?} (downstream: {downstream}): {e}"));
            }
            count += 1;
            let name = format!("after-{}-{fault:?}", if downstream { "down" } else { "up" });
            deploy(&setup, agents, &name.to_lowercase(), count).await;
        }
    }
}
