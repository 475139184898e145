//! gitjob downloads a GitRepo's repository charts into its Bundles when given `--helm`, as
//! Fleet's reader does: the chart's files are in the Bundle; a download that fails is the
//! GitRepo's `Stalled` condition, and the last Bundle stays.

mod support;

use fleet_testkit::binaries::{Tool, ensure};
use fleet_testkit::file_server::FileServer;
use fleet_testkit::git::GitRepoFixture;
use fleet_testkit::helm_repo::HelmRepoDir;
use fleet_testkit::wait_for;
use kube::api::PostParams;
use support::*;

/// gitjob with the pinned helm, and a GitRepo `name` on `repo` (path `app`, with `spec`
/// lines added), created.
async fn gitjob_and_gitrepo(
    plane: &fleet_testkit::ControlPlane,
    work: &std::path::Path,
    name: &str,
    repo: &GitRepoFixture,
    spec: &str,
) -> Gitjob {
    let helm = ensure(Tool::Helm).expect("helm").display().to_string();
    let gitjob = Gitjob::start_with(plane, "gitjob-0", work, &["--helm", &helm]);
    gitrepos(&plane.client())
        .create(
            &PostParams::default(),
            &gitrepo(&format!(
                "apiVersion: fleet.cattle.io/v1alpha1\nkind: GitRepo\nmetadata:\n  name: {name}\nspec:\n  repo: {}\n  pollingInterval: 1s\n  paths: [app]\n{spec}",
                repo.file_url()
            )),
        )
        .await
        .expect("gitrepo");
    gitjob
}

/// Waits for Bundle `bundle` to hold chart `chart` of `url` at `version`, embedded.
async fn embedded_chart(
    client: &kube::Client,
    bundle: &str,
    (chart, url, version): (&str, &str, &str),
    gitjob: &Gitjob,
) -> fleet_api::Bundle {
    let embedded = fleet_api::naming::embedded_chart_dir(chart, url, version);
    let chart_file = format!("{embedded}/{chart}/Chart.yaml");
    wait_for(&bundles(client), bundle, WAIT, |b| {
        b.spec
            .resources
            .iter()
            .any(|r| r.name.as_deref() == Some(chart_file.as_str()))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", gitjob.process.log_tail(30)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repository_charts_are_downloaded_into_the_bundle_and_failures_stall() {
    let plane = plane().await;
    let client = plane.client();
    let helm_repo = HelmRepoDir::new().expect("helm repo");
    let server = FileServer::start(&helm_repo.root())
        .await
        .expect("file server");
    let url = format!("http://{}", server.address());
    helm_repo
        .publish("web", "1.0.0", &[("cm.yaml", &configmap("web"))], &url)
        .expect("publish");
    let repo = GitRepoFixture::new().expect("git repo");
    let fleet_yaml =
        |version: &str| format!("helm:\n  repo: {url}\n  chart: web\n  version: {version}\n");
    repo.commit_files("chart", &[("app/fleet.yaml", &fleet_yaml("1.0.0"))])
        .expect("commit");
    let work = tempfile::tempdir().expect("tempdir");
    let gitjob = gitjob_and_gitrepo(&plane, work.path(), "charts", &repo, "").await;
    let web = ("web", url.as_str(), "1.0.0");
    let bundle = embedded_chart(&client, "charts-app", web, &gitjob).await;
    let first_commit = commit_of(&bundle).map(str::to_owned);

    // A version the repository does not have: the GitRepo stalls naming the chart.
    repo.commit_files(
        "missing version",
        &[("app/fleet.yaml", &fleet_yaml("9.9.9"))],
    )
    .expect("commit");
    wait_for(&gitrepos(&client), "charts", WAIT, |g| {
        stalled_message(g).is_some_and(|m| m.contains("downloading chart web"))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", gitjob.process.log_tail(30)));
    let kept = bundles(&client).get("charts-app").await.expect("bundle");
    assert_eq!(
        commit_of(&kept).map(str::to_owned),
        first_commit,
        "the last Bundle stays"
    );
}

/// A chart from a repository that wants basic auth: the GitRepo's `helmSecretName` is used
/// for URLs its `helmRepoURLRegex` matches, as in Fleet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_repository_chart_is_downloaded_with_the_gitrepos_helm_secret() {
    let data = |b64: fn(&str) -> String| serde_json::json!({"username": b64("fleet"), "password": b64("s3cret")});
    private_chart_is_downloaded("helmSecretName", data).await;
}

/// The same with credentials per bundle path: `helmSecretNameForPaths`, whose
/// `secrets-path.yaml` names the bundle's path (`app`), as Fleet reads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_repository_chart_is_downloaded_with_the_credentials_of_its_path() {
    let data = |b64: fn(&str) -> String| serde_json::json!({"secrets-path.yaml": b64("app:\n  username: fleet\n  password: s3cret\n")});
    private_chart_is_downloaded("helmSecretNameForPaths", data).await;
}

/// A GitRepo whose bundle `app` wants chart `private` from a repository with basic auth
/// (`fleet`/`s3cret`) gets it embedded, with the Secret (`data`) its field `secret_field`
/// names and a `helmRepoURLRegex` matching the repository.
async fn private_chart_is_downloaded(
    secret_field: &str,
    data: fn(fn(&str) -> String) -> serde_json::Value,
) {
    use base64::Engine as _;
    let plane = plane().await;
    let client = plane.client();
    let helm_repo = HelmRepoDir::new().expect("helm repo");
    let server = FileServer::start_with_basic_auth(&helm_repo.root(), Some(("fleet", "s3cret")))
        .await
        .expect("file server");
    let url = format!("http://{}", server.address());
    helm_repo
        .publish(
            "private",
            "1.0.0",
            &[("cm.yaml", &configmap("private"))],
            &url,
        )
        .expect("publish");
    let b64: fn(&str) -> String = |text| base64::engine::general_purpose::STANDARD.encode(text);
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "helm-creds", "namespace": NS},
        "data": data(b64),
    }))
    .expect("secret");
    kube::Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &secret)
        .await
        .expect("secret");
    let repo = GitRepoFixture::new().expect("git repo");
    let fleet_yaml = format!("helm:\n  repo: {url}\n  chart: private\n  version: 1.0.0\n");
    repo.commit_files("chart", &[("app/fleet.yaml", &fleet_yaml)])
        .expect("commit");
    let work = tempfile::tempdir().expect("tempdir");
    let spec = format!("  {secret_field}: helm-creds\n  helmRepoURLRegex: \"{url}\"\n");
    let gitjob = gitjob_and_gitrepo(&plane, work.path(), "private", &repo, &spec).await;
    let private = ("private", url.as_str(), "1.0.0");
    embedded_chart(&client, "private-app", private, &gitjob).await;
}
