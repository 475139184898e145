//! A GitRepo whose repository has a git submodule: gitjob fetches the submodule at the
//! commit the superproject records (as Fleet clones with submodules), so a bundle inside it
//! is deployed, and a new submodule commit recorded by the superproject follows.

mod support;

use fleet_testkit::git::GitRepoFixture;
use fleet_testkit::wait_for;
use kube::api::PostParams;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submodules_manifests_are_deployed() {
    let plane = plane().await;
    let client = plane.client();
    let lib = GitRepoFixture::new().expect("submodule repo");
    lib.commit_files("lib", &[("cm.yaml", &configmap("from-submodule"))])
        .expect("commit");
    let app = GitRepoFixture::new().expect("superproject");
    app.commit_files("app", &[("README.md", "app\n")])
        .expect("commit");
    app.git(&[
        "-c",
        "protocol.file.allow=always",
        "submodule",
        "add",
        "--quiet",
        &lib.file_url(),
        "vendor/lib",
    ])
    .expect("submodule add");
    let first = app.commit("add the submodule").expect("commit");

    let work = tempfile::tempdir().expect("tempdir");
    let gitjob = Gitjob::start(&plane, "gitjob-0", work.path());
    gitrepos(&client)
        .create(
            &PostParams::default(),
            &gitrepo(&format!(
                "apiVersion: fleet.cattle.io/v1alpha1\nkind: GitRepo\nmetadata:\n  name: sub\nspec:\n  repo: {}\n  pollingInterval: 1s\n  paths: [vendor/lib]\n",
                app.file_url()
            )),
        )
        .await
        .expect("gitrepo");
    let has = |text: &'static str, commit: String| {
        move |b: &fleet_api::Bundle| {
            commit_of(b) == Some(commit.as_str())
                && b.spec
                    .resources
                    .iter()
                    .any(|r| r.content.as_deref().is_some_and(|c| c.contains(text)))
        }
    };
    wait_for(
        &bundles(&client),
        "sub-vendor-lib",
        WAIT,
        has("from-submodule", first),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", gitjob.process.log_tail(30)));

    // The submodule moves on and the superproject records it: the Bundle follows.
    lib.commit_files("lib v2", &[("cm.yaml", &configmap("submodule-v2"))])
        .expect("commit");
    let sub_dir = app.path().join("vendor/lib");
    let pull = std::process::Command::new("git")
        .args([
            "-c",
            "protocol.file.allow=always",
            "pull",
            "--quiet",
            "origin",
            "HEAD",
        ])
        .current_dir(&sub_dir)
        .output()
        .expect("git pull");
    assert!(
        pull.status.success(),
        "{}",
        String::from_utf8_lossy(&pull.stderr)
    );
    let second = app.commit("bump the submodule").expect("commit");
    wait_for(
        &bundles(&client),
        "sub-vendor-lib",
        WAIT,
        has("submodule-v2", second),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", gitjob.process.log_tail(30)));
}
