//! helmops on a real control plane with a real Helm repository: charts packaged by the test
//! with the pinned helm, indexed with `helm repo index`, served over HTTP.

mod support;

use fleet_api::{Bundle, HelmOp};
use fleet_testkit::file_server::FileServer;
use fleet_testkit::helm_repo::HelmRepoDir;
use fleet_testkit::wait_for;
use kube::Api;
use kube::api::PostParams;
use support::{NS, WAIT, plane, replica};

/// Packages chart `web` at `version` into the repository and re-indexes it.
fn publish(repo: &HelmRepoDir, url: &str, version: &str) {
    repo.publish(
        "web",
        version,
        &[(
            "cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\n",
        )],
        url,
    )
    .expect("publish");
}

fn helmop(name: &str, repo: &str, version: &str) -> HelmOp {
    serde_saphyr::from_str(&format!(
        "apiVersion: fleet.cattle.io/v1alpha1\nkind: HelmOp\nmetadata:\n  name: {name}\nspec:\n  pollingInterval: 1s\n  helm:\n    repo: {repo}\n    chart: web\n    version: \"{version}\"\n"
    ))
    .expect("helmop")
}

fn chart_version(bundle: &Bundle) -> Option<&str> {
    bundle
        .spec
        .options
        .helm
        .as_ref()
        .and_then(|h| h.version.as_deref())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helmops_resolve_chart_versions_from_a_real_helm_repository() {
    let plane = plane().await;
    let client = plane.client();
    let work = tempfile::tempdir().expect("tempdir");
    let repo = HelmRepoDir::new().expect("repo dir");
    let server = FileServer::start(&repo.root()).await.expect("server");
    for version in ["0.1.0", "0.1.1", "1.0.0"] {
        publish(&repo, &server.url(), version);
    }

    let (helmops, _port) = replica(&plane, work.path(), "helmops");

    let api: Api<HelmOp> = Api::namespaced(client.clone(), NS);
    for (name, constraint) in [
        ("pinned", "0.1.0"),
        ("minor", "~0.1"),
        ("newest", ""),
        ("missing", "^9"),
    ] {
        api.create(
            &PostParams::default(),
            &helmop(name, &server.url(), constraint),
        )
        .await
        .expect("create");
    }
    let bundles: Api<Bundle> = Api::namespaced(client.clone(), NS);
    for (name, want) in [("pinned", "0.1.0"), ("minor", "0.1.1"), ("newest", "1.0.0")] {
        let bundle = wait_for(&bundles, name, WAIT, |b| chart_version(b) == Some(want))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}\n{}", helmops.log_tail(20)));
        let labels = bundle.metadata.labels.unwrap_or_default();
        assert_eq!(
            labels
                .get("fleet.cattle.io/fleet-helm-name")
                .map(String::as_str),
            Some(name)
        );
        // The status is written after the Bundle: wait for it, do not read it right away.
        let helmop = wait_for(&api, name, WAIT, |h| {
            h.status.as_ref().is_some_and(|s| s.version.is_some())
        })
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}\n{}", helmops.log_tail(20)));
        let status = helmop.status.unwrap_or_default();
        assert_eq!(status.version.as_deref(), Some(want));
    }
    let missing = wait_for(&api, "missing", WAIT, |h| {
        h.status.as_ref().is_some_and(|s| {
            s.base
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "False")
        })
    })
    .await
    .expect("error condition");
    let message = missing
        .status
        .and_then(|s| s.base.conditions.into_iter().find(|c| c.type_ == "Ready"))
        .and_then(|c| c.message);
    assert!(
        message
            .unwrap_or_default()
            .contains("no version of chart \"web\" matches"),
        "says why"
    );
    // And says it as an Event on the HelmOp.
    fleet_testkit::wait_event(&client, Some(NS), "SyncFailed", "missing", "no version")
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", helmops.log_tail(20)));

    // A private repository: HTTPS with a private CA and basic auth, reached with the
    // HelmOp's helmSecretName (username, password, cacerts); without it: a clear error.
    use base64::Engine as _;
    let private = HelmRepoDir::new().expect("repo dir");
    let files = FileServer::start_with_basic_auth(&private.root(), Some(("fleet", "s3cret")))
        .await
        .expect("server");
    let ca = fleet_testkit::certs::CertAuthority::new("private helm CA").expect("ca");
    let tls =
        fleet_testkit::tls::TlsProxy::start(files.address(), &ca.serving_cert().expect("cert"))
            .await
            .expect("tls");
    let private_url = format!("https://{}", tls.address());
    publish(&private, &private_url, "2.0.0");
    let b64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    let secret: k8s_openapi::api::core::v1::Secret = serde_saphyr::from_str(&format!(
        "metadata:\n  name: repo-creds\ndata:\n  username: {}\n  password: {}\n  cacerts: {}\n",
        b64("fleet"),
        b64("s3cret"),
        b64(&ca.cert_pem())
    ))
    .expect("secret");
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &secret)
        .await
        .expect("secret");
    let mut with_secret = helmop("private", &private_url, "");
    with_secret.spec.helm_secret_name = Some("repo-creds".to_owned());
    api.create(&PostParams::default(), &with_secret)
        .await
        .expect("create");
    api.create(
        &PostParams::default(),
        &helmop("untrusted", &private_url, ""),
    )
    .await
    .expect("create");
    let bundle = wait_for(&bundles, "private", WAIT, |b| {
        chart_version(b) == Some("2.0.0")
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", helmops.log_tail(20)));
    assert_eq!(
        bundle
            .spec
            .helm_op_options
            .and_then(|o| o.helm_op_secret_name)
            .as_deref(),
        Some("repo-creds"),
        "the agents download the chart with the same secret"
    );
    let untrusted = wait_for(&api, "untrusted", WAIT, |h| {
        h.status
            .as_ref()
            .is_some_and(|s| s.base.conditions.iter().any(|c| c.status == "False"))
    })
    .await
    .expect("error condition");
    let message = untrusted
        .status
        .and_then(|s| s.base.conditions.into_iter().find(|c| c.type_ == "Ready"))
        .and_then(|c| c.message)
        .unwrap_or_default();
    assert!(message.contains("certificate"), "says why: {message}");

    // A new release in the repository is picked up by polling.
    publish(&repo, &server.url(), "1.1.0");
    wait_for(&bundles, "newest", WAIT, |b| {
        chart_version(b) == Some("1.1.0")
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", helmops.log_tail(20)));
}
