//! gitjob on a real control plane with real git: repositories made by the tests, read over
//! file://, over smart HTTP (`git http-backend`, also behind TLS) and over ssh (a real
//! `sshd`; these in `gitjob/transports.rs`), with the gitjob binary as users run it.

mod support;
#[path = "gitjob/transports.rs"]
mod transports;

use std::time::Duration;

use fleet_api::GitRepo;
use fleet_testkit::git::GitRepoFixture;
use fleet_testkit::{eventually, wait_deleted, wait_for};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use support::*;

fn bundle_at_commit(commit: String) -> impl Fn(&fleet_api::Bundle) -> bool {
    move |b| commit_of(b) == Some(commit.as_str())
}

fn synced_to(commit: String) -> impl Fn(&GitRepo) -> bool {
    move |g| {
        g.status
            .as_ref()
            .is_some_and(|s| s.commit.as_deref() == Some(commit.as_str()))
    }
}

fn stalled_with(text: &'static str) -> impl Fn(&GitRepo) -> bool {
    move |g| stalled_message(g).is_some_and(|m| m.contains(text))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_repository_becomes_bundles_that_follow_its_commits() {
    let plane = plane().await;
    let client = plane.client();
    let work = tempfile::tempdir().expect("tempdir");
    let repo = GitRepoFixture::new().expect("git repo");
    let first = repo
        .commit_files(
            "two apps",
            &[
                ("apps/a/cm.yaml", &configmap("a")),
                ("apps/b/fleet.yaml", "defaultNamespace: b\n"),
                ("apps/b/cm.yaml", &configmap("b")),
                ("README.md", "not a bundle\n"),
            ],
        )
        .expect("commit");
    let gitjob = Gitjob::start(&plane, "gitjob-0", work.path());
    gitrepos(&client)
        .create(
            &PostParams::default(),
            &gitrepo(&format!(
                "apiVersion: fleet.cattle.io/v1alpha1\nkind: GitRepo\nmetadata:\n  name: r\n  labels:\n    team: web\nspec:\n  repo: {}\n  pollingInterval: 1s\n  paths: [\"apps/*\"]\n",
                repo.file_url()
            )),
        )
        .await
        .expect("create gitrepo");

    let bundles = bundles(&client);
    for name in ["r-apps-a", "r-apps-b"] {
        wait_for(&bundles, name, WAIT, bundle_at_commit(first.clone()))
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", gitjob.process.log_tail(30)));
    }
    let b = bundles.get("r-apps-b").await.expect("bundle b");
    let labels = b.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get("fleet.cattle.io/repo-name").map(String::as_str),
        Some("r")
    );
    assert_eq!(labels.get("team").map(String::as_str), Some("web"));
    assert_eq!(b.spec.options.default_namespace.as_deref(), Some("b"));
    let owner = b.metadata.owner_references.clone().unwrap_or_default();
    assert_eq!(owner.first().map(|o| o.kind.as_str()), Some("GitRepo"));
    wait_for(&gitrepos(&client), "r", WAIT, synced_to(first.clone()))
        .await
        .expect("status.commit");

    // Unchanged polls write nothing. Counted from the first unchanged poll on: it starts only
    // after the sync that wrote (and counted) the status has finished.
    let unchanged_polls = || gitjob.metric("gitjob_reconciles_total{result=\"unchanged\"}");
    let writes = || async {
        gitjob.metric("gitjob_bundle_writes_total").await
            + gitjob.metric("gitjob_status_writes_total").await
    };
    let polls_reach = |target: f64| {
        eventually(
            "unchanged polls",
            WAIT,
            Duration::from_millis(200),
            move || async move {
                let now = unchanged_polls().await;
                if now >= target {
                    Ok(())
                } else {
                    Err(format!("{now}"))
                }
            },
        )
    };
    polls_reach(1.0).await.expect("a first unchanged poll");
    let (before, polls) = (writes().await, unchanged_polls().await);
    polls_reach(polls + 3.0)
        .await
        .expect("three more unchanged polls");
    assert_eq!(
        writes().await,
        before,
        "an unchanged poll costs no API write"
    );

    // A push updates the Bundle; a removed path prunes its Bundle.
    repo.remove("apps/b").expect("rm");
    let second = repo
        .commit_files("change a", &[("apps/a/cm.yaml", &configmap("a2"))])
        .expect("commit");
    wait_for(&bundles, "r-apps-a", WAIT, bundle_at_commit(second.clone()))
        .await
        .expect("a updated");
    wait_deleted(&bundles, "r-apps-b", WAIT)
        .await
        .expect("b pruned");
    let a = bundles.get("r-apps-a").await.expect("bundle a");
    assert!(
        a.spec
            .resources
            .iter()
            .any(|r| r.content.as_deref().is_some_and(|c| c.contains("a2")))
    );

    // A malformed fleet.yaml: the condition names file and line; the last Bundles stay.
    repo.commit_files(
        "break it",
        &[("apps/a/fleet.yaml", "defaultNamespace: x\nhelm: [\n")],
    )
    .expect("commit");
    wait_for(
        &gitrepos(&client),
        "r",
        WAIT,
        stalled_with("apps/a/fleet.yaml:"),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", gitjob.process.log_tail(30)));
    // The user sees it in the GitRepo's Events too: one per minute, however often it retries.
    let sync_failed = || fleet_testkit::events_about(&client, Some(NS), "SyncFailed", "r");
    let failed_syncs = || gitjob.metric("gitjob_reconciles_total{result=\"sync_failed\"}");
    fleet_testkit::wait_event(&client, Some(NS), "SyncFailed", "r", "apps/a/fleet.yaml:")
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", gitjob.process.log_tail(30)));
    let retries = failed_syncs().await;
    eventually(
        "two more failed syncs",
        WAIT,
        Duration::from_millis(200),
        || async {
            let now = failed_syncs().await;
            if now >= retries + 2.0 {
                Ok(())
            } else {
                Err(now.to_string())
            }
        },
    )
    .await
    .expect("retried");
    let events = sync_failed().await.expect("events");
    assert_eq!(events.len(), 1, "one Event per minute");
    let kept = bundles.get("r-apps-a").await.expect("bundle a kept");
    assert_eq!(commit_of(&kept), Some(second.as_str()));
    let status = gitrepos(&client)
        .get("r")
        .await
        .expect("gitrepo")
        .status
        .unwrap_or_default();
    assert_eq!(
        status.commit.as_deref(),
        Some(second.as_str()),
        "status.commit stays at the last good commit"
    );

    // Deleting the GitRepo deletes its Bundles (owner references).
    gitrepos(&client)
        .delete("r", &Default::default())
        .await
        .expect("delete");
    wait_deleted(&bundles, "r-apps-a", WAIT)
        .await
        .expect("bundles garbage-collected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_writes_and_a_killed_leader_hands_over() {
    let plane = plane().await;
    let client = plane.client();
    let work = tempfile::tempdir().expect("tempdir");
    let repo = GitRepoFixture::new().expect("git repo");
    let first = commit_configmap(&repo, "app", "c");
    let mut a = Gitjob::start(&plane, "gitjob-a", work.path());
    a.wait_role("leader").await;
    let b = Gitjob::start(&plane, "gitjob-b", work.path());
    b.wait_role("standby").await;
    gitrepos(&client)
        .create(
            &PostParams::default(),
            &gitrepo(&format!(
                "apiVersion: fleet.cattle.io/v1alpha1\nkind: GitRepo\nmetadata:\n  name: ha\nspec:\n  repo: {}\n  pollingInterval: 1s\n",
                repo.file_url()
            )),
        )
        .await
        .expect("gitrepo");
    let bundles = bundles(&client);
    wait_for(&bundles, "ha", WAIT, bundle_at_commit(first.clone()))
        .await
        .expect("bundle");
    // The metric counts after the write returns: the Bundle's watch event can come first.
    wait_writes(&a).await;
    assert_eq!(
        b.metric("gitjob_bundle_writes_total").await,
        0.0,
        "the standby writes nothing"
    );
    assert_eq!(
        b.metric("gitjob_reconciles_total{result=\"synced\"}").await,
        0.0
    );

    a.process.kill();
    let second = commit_configmap(&repo, "v2", "c2");
    b.wait_role("leader").await;
    wait_for(&bundles, "ha", WAIT, bundle_at_commit(second.clone()))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", b.process.log_tail(30)));
    wait_writes(&b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitrepo_restrictions_refuse_and_default() {
    let plane = plane().await;
    let client = plane.client();
    let work = tempfile::tempdir().expect("tempdir");
    let repo = GitRepoFixture::new().expect("git repo");
    let commit = commit_configmap(&repo, "app", "c");
    let restrictions: Api<fleet_api::GitRepoRestriction> = Api::namespaced(client.clone(), NS);
    let restriction: fleet_api::GitRepoRestriction = serde_saphyr::from_str(
        "apiVersion: fleet.cattle.io/v1alpha1\nkind: GitRepoRestriction\nmetadata:\n  name: only-example\ndefaultServiceAccount: deployer\nallowedRepoPatterns: ['^https://git\\.example\\.com/']\nallowedTargetNamespaceSelector:\n  matchLabels:\n    team: a\n",
    )
    .expect("restriction");
    restrictions
        .create(&PostParams::default(), &restriction)
        .await
        .expect("restriction");
    let gitjob = Gitjob::start(&plane, "gitjob-0", work.path());
    let api = gitrepos(&client);
    api.create(
        &PostParams::default(),
        &gitrepo(&format!(
            "apiVersion: fleet.cattle.io/v1alpha1\nkind: GitRepo\nmetadata:\n  name: restricted\nspec:\n  repo: {}\n",
            repo.file_url()
        )),
    )
    .await
    .expect("gitrepo");
    wait_for(&api, "restricted", WAIT, stalled_with("disallowed repo"))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", gitjob.process.log_tail(30)));
    assert!(
        bundles(&client)
            .get_opt("restricted")
            .await
            .expect("get")
            .is_none(),
        "nothing fetched, nothing written"
    );

    // The restriction now allows file:// repositories: the GitRepo syncs, with its default
    // service account.
    restrictions
        .patch(
            "only-example",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"allowedRepoPatterns": ["^file://"]})),
        )
        .await
        .expect("relax");
    let bundle = wait_for(
        &bundles(&client),
        "restricted",
        WAIT,
        bundle_at_commit(commit),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", gitjob.process.log_tail(30)));
    assert_eq!(
        bundle.spec.options.service_account.as_deref(),
        Some("deployer")
    );
    assert!(
        bundle
            .spec
            .options
            .allowed_target_namespace_selector
            .is_some(),
        "the agents check the target namespace"
    );
}

/// Waits until a replica's metrics count a Bundle write.
async fn wait_writes(replica: &Gitjob) {
    eventually(
        "a Bundle write counted",
        WAIT,
        Duration::from_millis(50),
        || async {
            let writes = replica.metric("gitjob_bundle_writes_total").await;
            if writes >= 1.0 {
                Ok(())
            } else {
                Err(writes.to_string())
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", replica.process.log_tail(20)));
}

/// A plane and a gitjob with one GitRepo `name` over a file:// repository holding `files`;
/// `spec` is the rest of the GitRepo's spec (indented YAML lines).
struct OneRepo {
    _plane: fleet_testkit::ControlPlane,
    _work: tempfile::TempDir,
    repo: GitRepoFixture,
    gitjob: Gitjob,
    client: kube::Client,
    api: Api<GitRepo>,
}

async fn one_repo(name: &str, files: &[(&str, &str)], spec: &str) -> OneRepo {
    let plane = plane().await;
    let client = plane.client();
    let work = tempfile::tempdir().expect("tempdir");
    let repo = GitRepoFixture::new().expect("git repo");
    repo.commit_files("the first commit", files)
        .expect("commit");
    let gitjob = Gitjob::start(&plane, "gitjob-0", work.path());
    let api = gitrepos(&client);
    api.create(
        &PostParams::default(),
        &gitrepo(&format!(
            "apiVersion: fleet.cattle.io/v1alpha1\nkind: GitRepo\nmetadata:\n  name: {name}\nspec:\n  repo: {}\n{spec}",
            repo.file_url()
        )),
    )
    .await
    .expect("create gitrepo");
    OneRepo {
        _plane: plane,
        _work: work,
        repo,
        gitjob,
        client,
        api,
    }
}

/// A `paths` entry that matches nothing (a typo) is a warning on the GitRepo: the other paths
/// are deployed, the sync is no failure (Stalled=False, as in Fleet), `PathsMatched` is False
/// and names the entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paths_entry_matching_nothing_is_reported() {
    // Bound whole: its plane and work dir live as long as the test.
    let setup = one_repo(
        "typo",
        &[("apps/a/cm.yaml", &configmap("a"))],
        "  paths: [\"apps/*\", \"aps/*\"]\n",
    )
    .await;
    let (client, gitjob, api) = (&setup.client, &setup.gitjob, &setup.api);
    let warned = wait_for(api, "typo", WAIT, |g| {
        g.status.as_ref().is_some_and(|s| {
            s.base
                .conditions
                .iter()
                .any(|c| c.type_ == "PathsMatched" && c.status == "False")
        })
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", gitjob.process.log_tail(20)));
    let status = warned.status.unwrap_or_default();
    let paths = status
        .base
        .conditions
        .iter()
        .find(|c| c.type_ == "PathsMatched")
        .and_then(|c| c.message.clone())
        .unwrap_or_default();
    assert!(
        paths.contains("aps/*") && !paths.contains("apps/*"),
        "{paths}"
    );
    assert!(
        status
            .base
            .conditions
            .iter()
            .any(|c| c.type_ == "Stalled" && c.status == "False"),
        "a typo is a warning, not a failed sync"
    );
    wait_for(&bundles(client), "typo-apps-a", WAIT, |_| true)
        .await
        .expect("the matching path is deployed");
}

/// gitjob's resident memory (VmRSS of /proc/<pid>/status), in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// An oversized `fleet.yaml` (11 MiB, over the 10 MiB default) is refused before it is read:
/// a clear condition, the last good Bundles stay, and gitjob's memory stays flat while the
/// sync is retried at every poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_file_is_refused_before_it_is_read() {
    // Bound whole: its plane and work dir live as long as the test.
    let setup = one_repo(
        "big",
        &[("app/cm.yaml", &configmap("a"))],
        "  pollingInterval: 1s\n  paths: [app]\n",
    )
    .await;
    let (client, gitjob, api, repo) = (&setup.client, &setup.gitjob, &setup.api, &setup.repo);
    let bundles = bundles(client);
    wait_for(&bundles, "big-app", WAIT, |_| true)
        .await
        .expect("the first commit is deployed");

    let padding = format!("# {}\n", "x".repeat(11 * 1024 * 1024));
    repo.commit_files(
        "an oversized fleet.yaml",
        &[("app/fleet.yaml", &format!("defaultNamespace: a\n{padding}"))],
    )
    .expect("commit");
    wait_for(
        api,
        "big",
        WAIT,
        stalled_with("more than the 10485760 bytes"),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", gitjob.process.log_tail(20)));
    let pid = gitjob.process.pid().expect("pid");
    let first = rss_kib(pid);
    // Five more polls, each retrying the sync of the oversized commit.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = rss_kib(pid);
    eprintln!("gitjob RSS across 5 retries of an 11 MiB fleet.yaml: {first} KiB -> {after} KiB");
    assert!(
        after < first + 8 * 1024,
        "memory grew from {first} KiB to {after} KiB"
    );
    wait_for(&bundles, "big-app", WAIT, |_| true)
        .await
        .expect("the last good Bundle stays");
}
