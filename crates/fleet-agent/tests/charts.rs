//! fleet-agent with fleet-controller on two real control planes: charts from a private Helm
//! repository (HTTPS with a private CA, basic auth, served by the test) and from a real OCI
//! registry.

mod support;

use fleet_api::Bundle;
use fleet_testkit::wait_for;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Api;
use kube::api::PostParams;
use support::{NS, Setup, WAIT, create};

/// A chart from a private Helm repository (HTTPS with a private CA, basic auth) and from an
/// OCI registry behind the same CA: the credentials Secret the bundle names is copied next to
/// its BundleDeployment by the controller and used by the agent's helm, which never gets the
/// password on its command line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn charts_from_a_private_helm_repository() {
    use base64::Engine as _;
    let setup = Setup::start().await;
    let (up, down) = (setup.upstream.client(), setup.downstream.client());
    // Every helm the agent starts goes through this wrapper, which records its command line
    // (what any process of the node can read in /proc/<pid>/cmdline) and execs the real helm.
    let argv_log = setup.work.path().join("helm-argv.log");
    let wrapper = setup.work.path().join("helm");
    fleet_testkit::process::write_script(
        &wrapper,
        &format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\nexec '{}' \"$@\"\n",
            argv_log.display(),
            fleet_testkit::binaries::ensure(fleet_testkit::binaries::Tool::Helm)
                .expect("helm")
                .display()
        ),
    )
    .expect("wrapper");
    let (agent, _) = setup.agent_with_helm("agent", &wrapper);
    setup.registered(&agent).await;
    let logs = || format!("{}\n{}", agent.log_tail(40), setup.controller.log_tail(20));
    let repo = fleet_testkit::helm_repo::HelmRepoDir::new().expect("repo");
    let files = fleet_testkit::file_server::FileServer::start_with_basic_auth(
        &repo.root(),
        Some(("fleet", "s3cret")),
    )
    .await
    .expect("file server");
    let ca = fleet_testkit::certs::CertAuthority::new("private helm CA").expect("ca");
    let tls =
        fleet_testkit::tls::TlsProxy::start(files.address(), &ca.serving_cert().expect("cert"))
            .await
            .expect("tls");
    let url = format!("https://{}", tls.address());
    repo.publish(
        "private",
        "1.0.0",
        &[(
            "cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-private-repo\n",
        )],
        &url,
    )
    .expect("publish");
    let b64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    let secret: Secret = support::yaml(&format!(
        "metadata:\n  name: repo-creds\ndata:\n  username: {}\n  password: {}\n  cacerts: {}\n",
        b64("fleet"),
        b64("s3cret"),
        b64(&ca.cert_pem())
    ));
    Api::<Secret>::namespaced(up.clone(), NS)
        .create(&PostParams::default(), &secret)
        .await
        .expect("secret");
    create::<fleet_api::ClusterGroup>(&up, "metadata:\n  name: default\nspec:\n  selector: {}\n")
        .await;
    create::<Bundle>(
        &up,
        &format!(
            "metadata:\n  name: private\nspec:\n  defaultNamespace: private\n  helm:\n    repo: {url}\n    chart: private\n    version: 1.0.0\n  helmOpOptions:\n    helmOpSecretName: repo-creds\n  targets:\n  - clusterGroup: default\n"
        ),
    )
    .await;
    let configmaps: Api<ConfigMap> = Api::namespaced(down.clone(), "private");
    wait_for(&configmaps, "from-private-repo", WAIT, |_| true)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", logs()));

    // The same chart as an OCI artifact in a registry behind the same private CA.
    let registry = fleet_testkit::oci::OciRegistry::start()
        .await
        .expect("registry");
    let oci_tls =
        fleet_testkit::tls::TlsProxy::start(registry.address(), &ca.serving_cert().expect("cert"))
            .await
            .expect("tls");
    let ca_file = setup.work.path().join("ca.pem");
    std::fs::write(&ca_file, ca.cert_pem()).expect("ca file");
    repo.push_oci(
        "private",
        "1.0.0",
        &format!("oci://{}/charts", oci_tls.address()),
        &ca_file,
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", registry.log_tail(20)));
    create::<Bundle>(
        &up,
        &format!(
            "metadata:\n  name: private-oci\nspec:\n  defaultNamespace: private-oci\n  helm:\n    chart: oci://{}/charts/private\n    version: 1.0.0\n  helmOpOptions:\n    helmOpSecretName: repo-creds\n  targets:\n  - clusterGroup: default\n",
            oci_tls.address()
        ),
    )
    .await;
    let configmaps: Api<ConfigMap> = Api::namespaced(down.clone(), "private-oci");
    wait_for(&configmaps, "from-private-repo", WAIT, |_| true)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}\n{}", logs(), registry.log_tail(20)));

    // The password reached helm through files of its private home and standard input only.
    let argv = std::fs::read_to_string(&argv_log).expect("helm command lines");
    assert!(argv.contains("upgrade --install"), "{argv}");
    assert!(argv.contains("registry login"), "{argv}");
    assert!(
        !argv.contains("s3cret"),
        "a password on helm's command line:\n{argv}"
    );
}
