//! gitjob under the faults an operator's control plane goes through, on a real one: the API
//! server frozen for longer than the Lease, the API server killed and started again on the
//! same etcd, etcd restarted, and the leader SIGKILLed in the middle of writing 100 Bundles.
//! After each, the replicas carry on by themselves (no restart of their own), every commit's
//! Bundles are written exactly once, and `status.commit` names a commit only once all of its
//! Bundles exist.

mod support;

use std::time::Duration;

use fleet_api::Bundle;
use fleet_testkit::faults::{self, Fault};
use fleet_testkit::git::GitRepoFixture;
use fleet_testkit::{wait_for, wait_for_count};
use futures::StreamExt as _;
use kube::ResourceExt;
use kube::api::PostParams;
use kube::runtime::watcher;
use support::*;

fn gitrepo_yaml(name: &str, repo: &GitRepoFixture) -> String {
    format!(
        "apiVersion: fleet.cattle.io/v1alpha1\nkind: GitRepo\nmetadata:\n  name: {name}\nspec:\n  repo: {}\n  pollingInterval: 1s\n",
        repo.file_url()
    )
}

/// Waits until the Bundle `name` is at `commit`, saying what both replicas logged if not.
async fn wait_bundle_at(client: &kube::Client, name: &str, commit: &str, replicas: &[&Gitjob]) {
    wait_for(&bundles(client), name, WAIT, |b| {
        commit_of(b) == Some(commit)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", faults::logs(replicas.iter().map(|r| &r.process))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitjob_rides_out_a_frozen_or_restarted_api_server_and_an_etcd_restart() {
    let mut plane = plane().await;
    let client = plane.client();
    let work = tempfile::tempdir().expect("tempdir");
    let repo = GitRepoFixture::new().expect("git repo");
    let mut commits = vec![commit_configmap(&repo, "first", "c1")];
    let mut a = Gitjob::start(&plane, "gitjob-a", work.path());
    a.wait_role("leader").await;
    let mut b = Gitjob::start(&plane, "gitjob-b", work.path());
    b.wait_role("standby").await;
    gitrepos(&client)
        .create(
            &PostParams::default(),
            &gitrepo(&gitrepo_yaml("faults", &repo)),
        )
        .await
        .expect("gitrepo");
    wait_bundle_at(&client, "faults", &commits[0], &[&a, &b]).await;

    // A commit lands just before each fault; the replicas pick it up once it is over.
    for (i, fault) in Fault::ALL.into_iter().enumerate() {
        let name = format!("c{}", i + 2);
        commits.push(commit_configmap(&repo, &format!("before {fault:?}"), &name));
        fault.inflict(&mut plane).await.expect("fault");
        let commit = commits.last().expect("commit").clone();
        wait_bundle_at(&client, "faults", &commit, &[&a, &b]).await;
        let ports = [a.admin_port, b.admin_port];
        faults::rode_out(&mut [&mut a.process, &mut b.process], &ports, WAIT)
            .await
            .unwrap_or_else(|e| panic!("{fault:?}: {e}"));
    }

    // Nothing done twice: each commit changed the Bundle's spec once (an identical apply,
    // such as a retried write, does not raise the generation).
    let bundle = bundles(&client).get("faults").await.expect("bundle");
    assert_eq!(
        bundle.metadata.generation,
        Some(i64::try_from(commits.len()).expect("small")),
        "one spec change per commit"
    );
    let status = gitrepos(&client)
        .get("faults")
        .await
        .expect("gitrepo")
        .status
        .unwrap_or_default();
    assert_eq!(status.commit.as_deref(), commits.last().map(String::as_str));
}

/// A repository of `n` directories, each a Bundle (a `fleet.yaml` makes it one) with one
/// ConfigMap.
fn many_bundles(repo: &GitRepoFixture, n: usize) -> String {
    let files: Vec<(String, String)> = (0..n)
        .flat_map(|i| {
            [
                (
                    format!("app-{i:03}/cm.yaml"),
                    configmap(&format!("cm-{i:03}")),
                ),
                (
                    format!("app-{i:03}/fleet.yaml"),
                    format!("defaultNamespace: app-{i:03}\n"),
                ),
            ]
        })
        .collect();
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(path, text)| (path.as_str(), text.as_str()))
        .collect();
    repo.commit_files("many bundles", &files).expect("commit")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_killed_in_the_middle_of_a_100_bundle_sync_leaves_all_100() {
    const N: usize = 100;
    let plane = plane().await;
    let client = plane.client();
    let work = tempfile::tempdir().expect("tempdir");
    let repo = GitRepoFixture::new().expect("git repo");
    let commit = many_bundles(&repo, N);
    let mut a = Gitjob::start(&plane, "gitjob-a", work.path());
    a.wait_role("leader").await;
    let b = Gitjob::start(&plane, "gitjob-b", work.path());
    b.wait_role("standby").await;

    // Freeze the leader on the first Bundle it writes (SIGSTOP takes effect at once; the
    // writes it has in flight still land), count what it wrote, then SIGKILL it.
    let api = bundles(&client);
    let mut watch = Box::pin(watcher::watcher(api.clone(), watcher::Config::default()));
    gitrepos(&client)
        .create(
            &PostParams::default(),
            &gitrepo(&gitrepo_yaml("many", &repo)),
        )
        .await
        .expect("gitrepo");
    let first_written = async {
        while let Some(event) = watch.next().await {
            if matches!(
                event,
                Ok(watcher::Event::Apply(_) | watcher::Event::InitApply(_))
            ) {
                return;
            }
        }
    };
    tokio::time::timeout(WAIT, first_written)
        .await
        .unwrap_or_else(|_| panic!("no Bundle written\n{}", a.process.log_tail(30)));
    a.process
        .signal(fleet_testkit::process::SIGSTOP)
        .expect("freeze the leader");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let written = api
        .list(&Default::default())
        .await
        .expect("list")
        .items
        .len();
    a.process.kill();
    eprintln!("leader killed with {written}/{N} Bundles written");

    // The other replica takes over and finishes; the commit is recorded only with all of them.
    b.wait_role("leader").await;
    let all = wait_for_count(
        &api,
        "all Bundles at the commit",
        N,
        WAIT,
        |bundle: &Bundle| commit_of(bundle) == Some(commit.as_str()),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", b.process.log_tail(30)));
    assert_eq!(all.len(), N);
    let names: std::collections::BTreeSet<String> = all.iter().map(ResourceExt::name_any).collect();
    assert_eq!(names.len(), N, "no Bundle twice");
    let gitrepo = wait_for(&gitrepos(&client), "many", WAIT, |g| {
        g.status
            .as_ref()
            .is_some_and(|s| s.commit.as_deref() == Some(commit.as_str()))
    })
    .await
    .expect("status.commit");
    assert_eq!(
        api.list(&Default::default())
            .await
            .expect("list")
            .items
            .len(),
        N,
        "nothing more than the repository's Bundles: {gitrepo:?}"
    );
}
