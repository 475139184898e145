//! gitjob against git servers over the network: HTTP with credentials and webhooks, HTTPS
//! trusted through the GitRepo's CA bundle, SSH with keys and strict known hosts.

use fleet_testkit::git::{GitHttpServer, GitRepoFixture};
use fleet_testkit::{http_post, wait_for};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};

use super::{bundle_at_commit, stalled_with};
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_repositories_with_credentials_webhooks_and_clear_errors() {
    let plane = plane().await;
    let client = plane.client();
    let work = tempfile::tempdir().expect("tempdir");
    let repo = GitRepoFixture::new().expect("git repo");
    let first = commit_configmap(&repo, "app", "c");
    let server = GitHttpServer::start(repo.parent_dir(), Some(("fleet", "s3cret")))
        .await
        .expect("git server");
    let url = server.url_of(&repo);

    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    for (secret, password) in [("good", "s3cret"), ("bad", "wrong")] {
        let s: Secret = serde_saphyr::from_str(&format!(
            "metadata:\n  name: {secret}\ntype: kubernetes.io/basic-auth\nstringData:\n  username: fleet\n  password: {password}\n"
        ))
        .expect("secret");
        secrets
            .create(&PostParams::default(), &s)
            .await
            .expect("secret");
    }
    let webhook_secret: Secret =
        serde_saphyr::from_str("metadata:\n  name: hook\nstringData:\n  github: hook-key\n")
            .expect("secret");
    secrets
        .create(&PostParams::default(), &webhook_secret)
        .await
        .expect("secret");

    let gitjob = Gitjob::start(&plane, "gitjob-0", work.path());
    let api = gitrepos(&client);
    for (gr, secret, extra) in [
        (
            "good",
            "good",
            "  disablePolling: true\n  webhookSecret: hook\n",
        ),
        ("bad-auth", "bad", ""),
        ("no-branch", "good", "  branch: nope\n"),
    ] {
        api.create(
            &PostParams::default(),
            &gitrepo(&format!(
                "apiVersion: fleet.cattle.io/v1alpha1\nkind: GitRepo\nmetadata:\n  name: {gr}\nspec:\n  repo: {url}\n  clientSecretName: {secret}\n{extra}"
            )),
        )
        .await
        .expect("gitrepo");
    }
    let bundles = bundles(&client);
    wait_for(&bundles, "good", WAIT, bundle_at_commit(first.clone()))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", gitjob.process.log_tail(30)));
    wait_for(&api, "bad-auth", WAIT, stalled_with("authentication"))
        .await
        .expect("auth error");
    wait_for(
        &api,
        "no-branch",
        WAIT,
        stalled_with("branch \"nope\" not found"),
    )
    .await
    .expect("branch error");

    // A push, announced by a GitHub webhook (polling is off for this GitRepo).
    let second = commit_configmap(&repo, "v2", "c2");
    let body = serde_json::json!({
        "ref": "refs/heads/master",
        "after": second,
        "repository": {"clone_url": format!("{url}.git"), "html_url": url},
    })
    .to_string();
    let post = |signature: String| {
        let body = body.clone();
        let port = gitjob.webhook_port;
        async move {
            http_post(
                port,
                "/",
                &[
                    ("Content-Type", "application/json"),
                    ("X-GitHub-Event", "push"),
                    ("X-Hub-Signature-256", &signature),
                ],
                body.as_bytes(),
            )
            .await
            .expect("webhook answers")
        }
    };
    // A push that reaches only GitRepos without any webhook secret is refused, unsigned.
    let unsigned_body = serde_json::json!({
        "ref": "refs/heads/nope",
        "after": second,
        "repository": {"clone_url": format!("{url}.git"), "html_url": url},
    })
    .to_string();
    let (status, text) = http_post(
        gitjob.webhook_port,
        "/",
        &[
            ("Content-Type", "application/json"),
            ("X-GitHub-Event", "push"),
        ],
        unsigned_body.as_bytes(),
    )
    .await
    .expect("webhook answers");
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("no webhook secret"), "{text}");
    let unsigned_status = api.get("no-branch").await.expect("gitrepo").status;
    assert_eq!(
        unsigned_status.and_then(|s| s.webhook_commit),
        None,
        "and records nothing"
    );

    let (status, _) = post("sha256=00".to_owned()).await;
    assert_eq!(status, 401, "a bad signature is refused");
    let status_after_bad = api
        .get("good")
        .await
        .expect("gitrepo")
        .status
        .unwrap_or_default();
    assert_eq!(status_after_bad.webhook_commit, None, "and changes nothing");
    let signature = format!(
        "sha256={}",
        gitjob::webhook::providers::sign("hook-key", body.as_bytes())
    );
    let (status, text) = post(signature).await;
    assert_eq!(status, 200, "{text}");
    wait_for(&bundles, "good", WAIT, bundle_at_commit(second.clone()))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", gitjob.process.log_tail(30)));

    // Fixing the credentials heals the GitRepo.
    api.patch(
        "bad-auth",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"clientSecretName": "good"}})),
    )
    .await
    .expect("patch");
    wait_for(&bundles, "bad-auth", WAIT, bundle_at_commit(second.clone()))
        .await
        .expect("healed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_repositories_are_trusted_through_the_gitrepo_ca_bundle() {
    use base64::Engine as _;
    let plane = plane().await;
    let client = plane.client();
    let work = tempfile::tempdir().expect("tempdir");
    let repo = GitRepoFixture::new().expect("git repo");
    let commit = commit_configmap(&repo, "app", "c");
    let server = GitHttpServer::start(repo.parent_dir(), None)
        .await
        .expect("git server");
    let ca = fleet_testkit::certs::CertAuthority::new("private git CA").expect("ca");
    let tls =
        fleet_testkit::tls::TlsProxy::start(server.address(), &ca.serving_cert().expect("cert"))
            .await
            .expect("tls");
    let url = format!("https://{}/{}", tls.address(), repo.dir_name());
    let bundle = base64::engine::general_purpose::STANDARD.encode(ca.cert_pem());

    let gitjob = Gitjob::start(&plane, "gitjob-0", work.path());
    let api = gitrepos(&client);
    for (gr, extra) in [
        ("trusted", format!("  caBundle: {bundle}\n")),
        ("untrusted", String::new()),
        ("skip-verify", "  insecureSkipTLSVerify: true\n".to_owned()),
    ] {
        api.create(
            &PostParams::default(),
            &gitrepo(&format!(
                "apiVersion: fleet.cattle.io/v1alpha1\nkind: GitRepo\nmetadata:\n  name: {gr}\nspec:\n  repo: {url}\n{extra}"
            )),
        )
        .await
        .expect("gitrepo");
    }
    let bundles = bundles(&client);
    for gr in ["trusted", "skip-verify"] {
        wait_for(&bundles, gr, WAIT, bundle_at_commit(commit.clone()))
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", gitjob.process.log_tail(30)));
    }
    wait_for(&api, "untrusted", WAIT, stalled_with("certificate"))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", gitjob.process.log_tail(30)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_repositories_with_keys_and_strict_known_hosts() {
    let plane = plane().await;
    let client = plane.client();
    let work = tempfile::tempdir().expect("tempdir");
    let repo = GitRepoFixture::new().expect("git repo");
    let commit = commit_configmap(&repo, "app", "c");
    let sshd = fleet_testkit::ssh::SshServer::start().await.expect("sshd");
    let url = sshd.url_of(repo.path());
    // A key sshd does not know, and a known_hosts entry with another host's key.
    let stranger = work.path().join("stranger");
    let keygen = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&stranger)
        .status()
        .expect("ssh-keygen");
    assert!(keygen.success());
    let stranger_key = std::fs::read_to_string(&stranger).expect("key");
    let stranger_public = std::fs::read_to_string(stranger.with_extension("pub")).expect("pub");
    let other_host = format!(
        "{} {}",
        sshd.known_hosts()
            .split_whitespace()
            .next()
            .unwrap_or_default(),
        stranger_public
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    );

    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    for (name, key, known_hosts) in [
        ("ssh-good", sshd.private_key(), sshd.known_hosts()),
        ("ssh-unknown-host", sshd.private_key(), other_host),
        ("ssh-wrong-key", stranger_key.as_str(), sshd.known_hosts()),
    ] {
        let mut secret = Secret {
            metadata: kube::api::ObjectMeta {
                name: Some(name.to_owned()),
                ..Default::default()
            },
            type_: Some("kubernetes.io/ssh-auth".to_owned()),
            ..Default::default()
        };
        secret.string_data = Some(
            [
                ("ssh-privatekey".to_owned(), key.to_owned()),
                ("known_hosts".to_owned(), known_hosts),
            ]
            .into(),
        );
        secrets
            .create(&PostParams::default(), &secret)
            .await
            .expect("secret");
    }
    let gitjob = Gitjob::start(&plane, "gitjob-0", work.path());
    let api = gitrepos(&client);
    for (gr, secret) in [
        ("ssh", "ssh-good"),
        ("unknown-host", "ssh-unknown-host"),
        ("wrong-key", "ssh-wrong-key"),
    ] {
        api.create(
            &PostParams::default(),
            &gitrepo(&format!(
                "apiVersion: fleet.cattle.io/v1alpha1\nkind: GitRepo\nmetadata:\n  name: {gr}\nspec:\n  repo: {url}\n  clientSecretName: {secret}\n"
            )),
        )
        .await
        .expect("gitrepo");
    }
    let logs = || format!("{}\n{}", gitjob.process.log_tail(30), sshd.log_tail(20));
    wait_for(
        &bundles(&client),
        "ssh",
        WAIT,
        bundle_at_commit(commit.clone()),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    wait_for(
        &api,
        "unknown-host",
        WAIT,
        stalled_with("is not in known_hosts"),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    wait_for(&api, "wrong-key", WAIT, |g| stalled_message(g).is_some())
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    let message =
        stalled_message(&api.get("wrong-key").await.expect("gitrepo")).unwrap_or_default();
    assert!(
        message.contains("auth"),
        "says authentication failed: {message}"
    );

    // A push reaches the Bundle over ssh too.
    let next = commit_configmap(&repo, "app", "d");
    wait_for(&bundles(&client), "ssh", WAIT, bundle_at_commit(next))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
}
