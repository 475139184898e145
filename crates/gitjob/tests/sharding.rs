//! Fleet's static sharding on a real control plane with real git: a GitRepo labelled
//! `fleet.cattle.io/shard-ref: eu` is synced by the `eu` shard's gitjob only (its Bundles carry
//! the label on to the controller's shard), an unlabelled one by the unsharded gitjob only.

mod support;

use fleet_testkit::git::GitRepoFixture;
use fleet_testkit::wait_for;
use kube::ResourceExt;
use kube::api::PostParams;
use support::*;

fn labelled_gitrepo(name: &str, url: &str, shard: Option<&str>) -> fleet_api::GitRepo {
    let labels = shard
        .map(|s| format!("  labels:\n    fleet.cattle.io/shard-ref: {s}\n"))
        .unwrap_or_default();
    gitrepo(&format!(
        "apiVersion: fleet.cattle.io/v1alpha1\nkind: GitRepo\nmetadata:\n  name: {name}\n{labels}spec:\n  repo: {url}\n"
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labelled_gitrepos_are_synced_by_their_shard_only() {
    let plane = plane().await;
    let client = plane.client();
    let work = tempfile::tempdir().expect("tempdir");
    let repo = GitRepoFixture::new().expect("git repo");
    repo.commit_files("the first commit", &[("cm.yaml", &configmap("one"))])
        .expect("commit");
    let url = repo.file_url();
    let main = Gitjob::start(&plane, "main", work.path());
    let eu = Gitjob::start_with(&plane, "eu", work.path(), &["--shard-id=eu"]);
    main.wait_role("leader").await;
    eu.wait_role("leader").await;
    let api = gitrepos(&client);
    for (name, shard) in [
        ("plain", None),
        ("eu-repo", Some("eu")),
        ("nobody", Some("us")),
    ] {
        api.create(&PostParams::default(), &labelled_gitrepo(name, &url, shard))
            .await
            .expect("create gitrepo");
    }
    wait_for(&bundles(&client), "plain", WAIT, |_| true)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", main.process.log_tail(20)));
    let eu_bundle = wait_for(&bundles(&client), "eu-repo", WAIT, |_| true)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", eu.process.log_tail(20)));
    assert_eq!(
        eu_bundle
            .labels()
            .get("fleet.cattle.io/shard-ref")
            .map(String::as_str),
        Some("eu"),
        "the GitRepo's shard label reaches its Bundles"
    );
    assert!(
        bundles(&client)
            .get_opt("nobody")
            .await
            .expect("read")
            .is_none(),
        "a shard nobody runs is synced by nobody"
    );

    let reconciles = "fleet_reconcile_duration_seconds_count{controller=\"gitrepo\"}";
    assert!(
        eu.metric(reconciles).await >= 1.0,
        "reconciles are observed"
    );

    // The shard's replicas gone, its GitRepos wait while the unsharded gitjob goes on.
    drop(eu);
    api.create(
        &PostParams::default(),
        &labelled_gitrepo("eu-two", &url, Some("eu")),
    )
    .await
    .expect("create gitrepo");
    api.create(
        &PostParams::default(),
        &labelled_gitrepo("plain-two", &url, None),
    )
    .await
    .expect("create gitrepo");
    wait_for(&bundles(&client), "plain-two", WAIT, |_| true)
        .await
        .expect("the unsharded gitjob goes on");
    assert!(
        bundles(&client)
            .get_opt("eu-two")
            .await
            .expect("read")
            .is_none()
    );
    let eu = Gitjob::start_with(&plane, "eu-2", work.path(), &["--shard-id=eu"]);
    wait_for(&bundles(&client), "eu-two", WAIT, |_| true)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "the shard's new replica syncs it: {e}\n{}",
                eu.process.log_tail(20)
            )
        });
}
