//! The fencing drill on helmops (real control plane, real Helm repository): the leader is
//! frozen (SIGSTOP) past its lease while HelmOps are created for it, the standby takes over
//! and writes their Bundles, and the resumed replica writes nothing, not even the work that
//! queued up for it while it was frozen.

mod support;

use std::time::Duration;

use fleet_api::{Bundle, HelmOp};
use fleet_testkit::file_server::FileServer;
use fleet_testkit::helm_repo::HelmRepoDir;
use fleet_testkit::{wait_for, wait_role};
use kube::Api;
use kube::api::PostParams;
use support::{NS, WAIT, plane, replica};

fn helmop(name: &str, repo: &str) -> HelmOp {
    serde_saphyr::from_str(&format!(
        "apiVersion: fleet.cattle.io/v1alpha1\nkind: HelmOp\nmetadata:\n  name: {name}\nspec:\n  helm:\n    repo: {repo}\n    chart: web\n"
    ))
    .expect("helmop")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_leader_writes_nothing_after_another_took_over() {
    let plane = plane().await;
    let client = plane.client();
    let work = tempfile::tempdir().expect("tempdir");
    let repo = HelmRepoDir::new().expect("repo dir");
    let server = FileServer::start(&repo.root()).await.expect("server");
    let chart = [(
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\n",
    )];
    repo.publish("web", "1.0.0", &chart, &server.url())
        .expect("publish");

    let (a, a_port) = replica(&plane, work.path(), "a");
    wait_role(a_port, "leader", WAIT).await.expect("a leads");
    let (b, b_port) = replica(&plane, work.path(), "b");
    wait_role(b_port, "standby", WAIT)
        .await
        .expect("b stands by");
    let helmops: Api<HelmOp> = Api::namespaced(client.clone(), NS);
    let bundles: Api<Bundle> = Api::namespaced(client.clone(), NS);
    helmops
        .create(&PostParams::default(), &helmop("first", &server.url()))
        .await
        .expect("create");
    wait_for(&bundles, "first", WAIT, |_| true)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", a.log_tail(20)));

    let names = ["second", "third", "fourth"];
    let pending = async {
        for name in names {
            helmops
                .create(&PostParams::default(), &helmop(name, &server.url()))
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
