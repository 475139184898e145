//! The umbrella chart with the pinned helm: lint, the objects for 1 and 3 replicas, and an
//! install into a real control plane (every object accepted by the API server).

use std::path::{Path, PathBuf};
use std::process::Command;

use fleet_testkit::ControlPlane;
use fleet_testkit::binaries::{Tool, ensure};
use serde_json::Value;

fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/fleet")
}

fn helm(args: &[&str]) -> String {
    let work = tempfile::tempdir().expect("tempdir");
    let output = Command::new(ensure(Tool::Helm).expect("helm"))
        .args(args)
        .env("HELM_CACHE_HOME", work.path().join("cache"))
        .env("HELM_CONFIG_HOME", work.path().join("config"))
        .env("HELM_DATA_HOME", work.path().join("data"))
        .output()
        .expect("helm runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "helm {args:?}: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn objects(replicas: &str) -> Vec<Value> {
    let chart = chart();
    let text = helm(&[
        "template",
        "fleet",
        &chart.display().to_string(),
        "--namespace",
        "cattle-fleet-system",
        "--set",
        &format!(
            "controller.replicas={replicas},gitjob.replicas={replicas},helmops.replicas={replicas},agent.replicas={replicas}"
        ),
    ]);
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).expect("yaml");
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

#[test]
fn the_chart_lints_and_scales_with_replicas() {
    let chart = chart().display().to_string();
    let lint = helm(&["lint", &chart]);
    assert!(lint.contains("0 chart(s) failed"), "{lint}");

    let one = objects("1");
    assert_eq!(of_kind(&one, "Deployment").len(), 4);
    assert!(
        of_kind(&one, "PodDisruptionBudget").is_empty(),
        "no PDB for a single replica"
    );
    assert_eq!(
        of_kind(&one, "CustomResourceDefinition").len(),
        fleet_api::crds().len()
    );

    let three = objects("3");
    for deployment in of_kind(&three, "Deployment") {
        assert_eq!(deployment["spec"]["replicas"], 3);
        let pod = &deployment["spec"]["template"]["spec"];
        assert!(
            pod["topologySpreadConstraints"].is_array(),
            "replicas are spread"
        );
        let container = &pod["containers"][0];
        assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
        assert!(
            container["args"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == "--election-lease-duration=15s"))
        );
    }
    assert_eq!(of_kind(&three, "PodDisruptionBudget").len(), 4);
    let leases = of_kind(&three, "Role");
    assert!(
        leases
            .iter()
            .all(|r| r["rules"][0]["resources"][0] == "leases"),
        "Roles grant only Leases"
    );

    // Fleet's HA defaults: two replicas of the upstream components.
    let defaults: Vec<Value> =
        serde_saphyr::from_multiple(&helm(&["template", "fleet", &chart])).expect("yaml");
    let replicas: Vec<(String, i64)> = defaults
        .iter()
        .filter(|o| o["kind"] == "Deployment")
        .map(|d| {
            (
                d["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                d["spec"]["replicas"].as_i64().unwrap_or_default(),
            )
        })
        .collect();
    assert!(
        replicas.contains(&("fleet-controller".to_owned(), 2))
            && replicas.contains(&("gitjob".to_owned(), 2)),
        "{replicas:?}"
    );
}

#[test]
fn ha_defaults_keep_replicas_apart_and_budgeted() {
    let three = objects("3");
    for deployment in of_kind(&three, "Deployment") {
        let pod = &deployment["spec"]["template"]["spec"];
        let required = &pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            [0];
        assert_eq!(
            required["topologyKey"], "kubernetes.io/hostname",
            "{}",
            deployment["metadata"]["name"]
        );
        assert_eq!(
            pod["topologySpreadConstraints"][0]["topologyKey"],
            "topology.kubernetes.io/zone"
        );
    }
    for pdb in of_kind(&three, "PodDisruptionBudget") {
        assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    }
    // One replica: no anti-affinity to satisfy; a priority class when asked for.
    let chart = chart().display().to_string();
    let single: Vec<Value> = serde_saphyr::from_multiple(&helm(&[
        "template",
        "fleet",
        &chart,
        "--set",
        "controller.replicas=1,priorityClassName=fleet-critical",
    ]))
    .expect("yaml");
    let controller = single
        .iter()
        .find(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == "fleet-controller")
        .expect("controller");
    let pod = &controller["spec"]["template"]["spec"];
    assert!(pod["affinity"].is_null(), "{pod}");
    assert_eq!(pod["priorityClassName"], "fleet-critical");
}

/// Fleet's `shards: [{id, nodeSelector}]`: one more Deployment per shard of the controller,
/// gitjob and helmops, named and labelled as in Fleet's chart, started with `--shard-id`, on
/// the shard's nodes, with selectors that do not overlap the unsharded Deployment's.
#[test]
fn shards_give_one_deployment_each_as_fleets_chart() {
    let chart = chart().display().to_string();
    let rendered: Vec<Value> = serde_saphyr::from_multiple(&helm(&[
        "template",
        "fleet",
        &chart,
        "--set",
        "shards[0].id=eu,shards[0].nodeSelector.region=eu,shards[1].id=us,shards[2].id=eu",
    ]))
    .expect("yaml");
    let deployments = of_kind(&rendered, "Deployment");
    for component in ["fleet-controller", "gitjob", "helmops"] {
        let named = |name: &str| {
            deployments
                .iter()
                .find(|d| d["metadata"]["name"] == name)
                .unwrap_or_else(|| panic!("{name} rendered"))
        };
        let unsharded = named(component);
        let labels = &unsharded["spec"]["template"]["metadata"]["labels"];
        assert_eq!(labels["fleet.cattle.io/shard-default"], "true");
        let args = unsharded["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
        assert!(!args.contains("--shard-id"), "{args}");
        for shard in ["eu", "us"] {
            let deployment = named(&format!("{component}-shard-{shard}"));
            let pod = &deployment["spec"]["template"];
            assert_eq!(pod["metadata"]["labels"]["fleet.cattle.io/shard-id"], shard);
            let args = pod["spec"]["containers"][0]["args"].to_string();
            assert!(args.contains(&format!("--shard-id={shard}")), "{args}");
            assert_ne!(
                deployment["spec"]["selector"], unsharded["spec"]["selector"],
                "no overlapping selectors"
            );
        }
        let eu = named(&format!("{component}-shard-eu"));
        assert_eq!(
            eu["spec"]["template"]["spec"]["nodeSelector"]["region"],
            "eu"
        );
    }
    assert_eq!(
        deployments.len(),
        1 + 3 * 3,
        "the agent, and three per component"
    );
}

/// The PrometheusRule the chart renders where the CRD exists holds rules that the pinned
/// promtool accepts, and the dashboard is valid JSON.
#[test]
fn the_rendered_alerts_pass_promtool() {
    let chart = chart().display().to_string();
    let rendered: Vec<Value> = serde_saphyr::from_multiple(&helm(&[
        "template",
        "fleet",
        &chart,
        "--api-versions",
        "monitoring.coreos.com/v1/PrometheusRule",
        "--api-versions",
        "monitoring.coreos.com/v1/PodMonitor",
    ]))
    .expect("yaml");
    let rule = rendered
        .iter()
        .find(|o| o["kind"] == "PrometheusRule")
        .expect("a PrometheusRule where the CRD exists");
    let alerts: Vec<&str> = rule["spec"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .filter_map(|r| r["alert"].as_str())
        .collect();
    assert_eq!(
        alerts,
        [
            "FleetRsNoLeader",
            "FleetRsFrequentLeaderChanges",
            "FleetRsLeaseRenewFailures",
            "FleetRsAgentHeartbeatStale"
        ]
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("rules.yaml");
    std::fs::write(&rules, serde_json::to_string(&rule["spec"]).expect("json")).expect("write");
    let output = Command::new(ensure(Tool::Promtool).expect("promtool"))
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .expect("promtool runs");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "promtool: {text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(text.contains("SUCCESS: 4 rules found"), "{text}");
    assert!(rendered.iter().any(|o| o["kind"] == "PodMonitor"));

    let dashboard = rendered
        .iter()
        .find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == "fleet-rs-dashboard")
        .expect("dashboard");
    let json: Value = serde_json::from_str(
        dashboard["data"]["fleet-rs.json"]
            .as_str()
            .expect("dashboard json"),
    )
    .expect("valid JSON");
    assert!(json["panels"].as_array().is_some_and(|p| p.len() >= 6));
    // Without the CRDs, neither is rendered.
    let plain = objects("1");
    assert!(of_kind(&plain, "PrometheusRule").is_empty());
    assert!(of_kind(&plain, "PodMonitor").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_installs_into_a_real_control_plane() {
    let plane = ControlPlane::start().await.expect("control plane");
    let out = install(&plane, &[]);
    assert!(out.contains("STATUS: deployed"), "{out}");
}

/// `helm install fleet` of the chart into `cattle-fleet-system` of `plane`; helm's output.
fn install(plane: &ControlPlane, extra: &[&str]) -> String {
    let chart = chart().display().to_string();
    let kubeconfig = plane.kubeconfig_path().display().to_string();
    let mut args = vec![
        "install",
        "fleet",
        &chart,
        "--kubeconfig",
        &kubeconfig,
        "--namespace",
        "cattle-fleet-system",
        "--create-namespace",
    ];
    args.extend_from_slice(extra);
    helm(&args)
}

/// A binary of the workspace (the test runs the real components).
fn workspace_binary(name: &str) -> PathBuf {
    fleet_testkit::process::workspace_binary(name, name).expect("workspace binary")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_component_does_its_job_with_exactly_the_charts_rbac() {
    use fleet_api::{Bundle, BundleDeployment, Cluster, GitRepo};
    use fleet_testkit::git::GitRepoFixture;
    use fleet_testkit::{Lifetime, ManagedProcess, ports, serialize_kubeconfig, wait_for};
    use kube::Api;
    use kube::api::PostParams;

    const NS: &str = "cattle-fleet-system";
    let plane = ControlPlane::start().await.expect("control plane");
    install(&plane, &["--set", "agent.enabled=false"]);
    let work = tempfile::tempdir().expect("tempdir");

    // Each component runs as its chart ServiceAccount (impersonated), nothing more.
    let mut processes = Vec::new();
    for (component, sa) in [
        ("fleet-controller", "fleet-controller"),
        ("gitjob", "gitjob"),
    ] {
        let user = format!("system:serviceaccount:{NS}:{sa}");
        let groups = [
            "system:serviceaccounts",
            &format!("system:serviceaccounts:{NS}"),
            "system:authenticated",
        ];
        let path = work.path().join(format!("{sa}.kubeconfig"));
        let text = serialize_kubeconfig(&plane.impersonating_kubeconfig(&user, &groups))
            .expect("kubeconfig");
        std::fs::write(&path, text).expect("write");
        let port = ports::free_port().expect("port");
        let mut cmd = Command::new(workspace_binary(component));
        cmd.args([
            format!("--kubeconfig={}", path.display()),
            format!("--namespace={NS}"),
            format!("--metrics-bind-address=127.0.0.1:{port}"),
            format!("--health-bind-address=127.0.0.1:{port}"),
        ]);
        if component == "gitjob" {
            cmd.arg(format!(
                "--webhook-bind-address=127.0.0.1:{}",
                ports::free_port().expect("port")
            ));
            cmd.arg(format!(
                "--cache-dir={}",
                work.path().join("cache").display()
            ));
        }
        processes.push(
            ManagedProcess::spawn(
                component,
                cmd,
                &work.path().join(format!("{component}.log")),
                Lifetime::Owned,
            )
            .expect("spawn"),
        );
    }
    let logs = || {
        processes
            .iter()
            .map(|p| p.log_tail(15))
            .collect::<Vec<_>>()
            .join("\n")
    };

    let client = plane.client();
    let repo = GitRepoFixture::new().expect("repo");
    repo.commit_files(
        "app",
        &[(
            "cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n",
        )],
    )
    .expect("commit");
    // The controller bootstraps fleet-local with Cluster `local` and ClusterGroup `default`.
    // Retried, not watched: right after `helm install` the Cluster CRD may not be served yet
    // (a watch's first list would get 404 and give up).
    let clusters: Api<Cluster> = Api::namespaced(client.clone(), "fleet-local");
    fleet_testkit::eventually(
        "Cluster fleet-local/local",
        std::time::Duration::from_secs(60),
        std::time::Duration::from_millis(200),
        || async {
            match clusters.get_opt("local").await {
                Ok(Some(_)) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    let gitrepo: GitRepo = serde_saphyr::from_str(&format!(
        "apiVersion: fleet.cattle.io/v1alpha1\nkind: GitRepo\nmetadata:\n  name: app\n  namespace: fleet-local\nspec:\n  repo: {}\n",
        repo.file_url()
    ))
    .expect("gitrepo");
    Api::<GitRepo>::namespaced(client.clone(), "fleet-local")
        .create(&PostParams::default(), &gitrepo)
        .await
        .expect("create");
    wait_for(
        &Api::<Bundle>::namespaced(client.clone(), "fleet-local"),
        "app",
        std::time::Duration::from_secs(60),
        |_| true,
    )
    .await
    .unwrap_or_else(|e| panic!("gitjob wrote the Bundle: {e}\n{}", logs()));
    let bd_namespace = fleet_api::naming::cluster_namespace("fleet-local", "local");
    wait_for(
        &Api::<BundleDeployment>::namespaced(client.clone(), &bd_namespace),
        "app",
        std::time::Duration::from_secs(60),
        |_| true,
    )
    .await
    .unwrap_or_else(|e| panic!("the controller wrote the BundleDeployment: {e}\n{}", logs()));
}
