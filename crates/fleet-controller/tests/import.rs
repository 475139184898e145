//! Manager-initiated import on two real control planes: a Cluster with `kubeConfigSecret` gets
//! its agent's objects installed downstream by the controller; the agent process, run with
//! exactly what the Deployment's pod would get (the bootstrap Secret's values, its env, its
//! ServiceAccount's RBAC through impersonation; no kubelet here), registers as that very
//! Cluster, which becomes Ready; a change of `agentTolerations` updates the Deployment
//! downstream; a bad kubeconfig is an `Imported=False` condition with the reason.

mod support;

use std::time::Duration;

use fleet_api::Cluster;
use fleet_testkit::{ControlPlane, Lifetime, ManagedProcess, eventually, ports, wait_for};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use support::{Controller, NS, create, plane, yaml};

const AGENT_NAMESPACE: &str = "cattle-fleet-system";
/// Generous: CI machines run this beside other suites, and four processes start in it.
const WAIT: Duration = Duration::from_secs(180);

fn condition<'a>(cluster: &'a Cluster, type_: &str) -> Option<&'a fleet_api::Condition> {
    cluster
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

/// Writes `kubeconfig` into a Secret `name` (key `value`, as Fleet reads it).
async fn kubeconfig_secret(client: &kube::Client, name: &str, kubeconfig: &str) {
    let mut secret: Secret = yaml(&format!("metadata:\n  name: {name}\n"));
    secret.string_data = Some([("value".to_owned(), kubeconfig.to_owned())].into());
    Api::<Secret>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &secret)
        .await
        .expect("kubeconfig secret");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_imported_cluster_gets_a_managed_agent() {
    let upstream = plane().await;
    let downstream = ControlPlane::start().await.expect("downstream");
    let work = tempfile::tempdir().expect("tempdir");
    let ca = upstream.ca_cert_path();
    let controller = Controller::start_with(
        &upstream,
        "controller",
        work.path(),
        &[
            "--agent-image=ghcr.io/fleet-rs/fleet-rs:test".to_owned(),
            format!("--api-server-ca-file={}", ca.display()),
        ],
    );
    controller.wait_role("leader").await;
    let up = upstream.client();
    let logs = || controller.process.log_tail(40);

    let kubeconfig =
        fleet_testkit::serialize_kubeconfig(downstream.kubeconfig()).expect("kubeconfig");
    kubeconfig_secret(&up, "downstream-kubeconfig", &kubeconfig).await;
    create::<Cluster>(
        &up,
        "metadata:\n  name: imported\nspec:\n  kubeConfigSecret: downstream-kubeconfig\n",
    )
    .await;

    // The agent's objects downstream, from the controller.
    let deployments: Api<Deployment> = Api::namespaced(downstream.client(), AGENT_NAMESPACE);
    let deployment = wait_for(&deployments, "fleet-agent", WAIT, |_| true)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    let clusters: Api<Cluster> = Api::namespaced(up.clone(), NS);
    let imported = wait_for(&clusters, "imported", WAIT, |c| {
        condition(c, "Imported").is_some_and(|c| c.status == "True")
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    let client_id = imported
        .spec
        .client_id
        .clone()
        .expect("a clientID was assigned");
    let status = imported.status.clone().unwrap_or_default();
    assert_eq!(status.agent_deployed_generation, Some(0));
    assert!(status.agent_tolerations_hash.is_some());

    let agent = agent_as_its_pod(&downstream, deployment, &client_id, work.path()).await;
    // It registers as the imported Cluster (no second Cluster), which turns Ready.
    let agent_pid = agent.pid().expect("agent pid");
    eventually(
        "the agent registers as the imported Cluster, which turns Ready",
        WAIT,
        Duration::from_millis(250),
        || async {
            if !fleet_testkit::process::pid_alive(agent_pid) {
                return Err("the agent process exited".to_owned());
            }
            let c = clusters.get("imported").await.map_err(|e| e.to_string())?;
            let checked_in = c
                .status
                .as_ref()
                .is_some_and(|s| s.agent.last_seen.is_some());
            match (
                checked_in,
                condition(&c, "Ready").map(|c| c.status.clone()),
                condition(&c, "Imported").map(|c| c.status.clone()),
            ) {
                (true, Some(ready), Some(imported)) if ready == "True" && imported == "True" => {
                    Ok(())
                }
                other => Err(format!("checked in, Ready, Imported: {other:?}")),
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\nagent log:\n{}\n{}", agent.log_tail(30), logs()));
    let names: Vec<String> = clusters
        .list(&Default::default())
        .await
        .expect("clusters")
        .items
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    assert_eq!(names, ["imported"]);

    tolerations_reach_the_deployment(
        &clusters,
        &deployments,
        status.agent_tolerations_hash,
        &logs,
    )
    .await;
    an_unreachable_cluster_is_a_condition(&up, &downstream, &kubeconfig, &logs).await;
}

/// Agent management: a toleration added to the Cluster reaches the Deployment, and the
/// Cluster's tolerations hash follows.
async fn tolerations_reach_the_deployment(
    clusters: &Api<Cluster>,
    deployments: &Api<Deployment>,
    hash_before: Option<String>,
    logs: &impl Fn() -> String,
) {
    clusters
        .patch(
            "imported",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"agentTolerations": [
                {"key": "dedicated", "operator": "Equal", "value": "fleet", "effect": "NoSchedule"}
            ]}})),
        )
        .await
        .expect("patch");
    wait_for(deployments, "fleet-agent", WAIT, |d| {
        d.spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .and_then(|p| p.tolerations.as_ref())
            .is_some_and(|t| t.iter().any(|t| t.key.as_deref() == Some("dedicated")))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    let hash = |c: &Cluster| {
        c.status
            .as_ref()
            .and_then(|s| s.agent_tolerations_hash.clone())
    };
    wait_for(clusters, "imported", WAIT, |c| hash(c) != hash_before)
        .await
        .expect("the tolerations hash follows");
}

/// A kubeconfig that points nowhere: a clear `Imported=False` condition, kept by the roll-up.
async fn an_unreachable_cluster_is_a_condition(
    up: &kube::Client,
    downstream: &ControlPlane,
    kubeconfig: &str,
    logs: &impl Fn() -> String,
) {
    let clusters: Api<Cluster> = Api::namespaced(up.clone(), NS);
    let nowhere = kubeconfig.replace(
        &downstream.server().to_owned(),
        &format!("https://127.0.0.1:{}", ports::free_port().expect("port")),
    );
    kubeconfig_secret(up, "nowhere-kubeconfig", &nowhere).await;
    create::<Cluster>(
        up,
        "metadata:\n  name: unreachable\nspec:\n  kubeConfigSecret: nowhere-kubeconfig\n",
    )
    .await;
    let failed = wait_for(&clusters, "unreachable", WAIT, |c| {
        condition(c, "Imported").is_some_and(|c| c.status == "False")
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    let message = condition(&failed, "Imported")
        .and_then(|c| c.message.clone())
        .unwrap_or_default();
    assert!(
        message.contains("applying the agent downstream"),
        "{message}"
    );
    eventually(
        "the roll-up keeps the import's condition",
        WAIT,
        Duration::from_millis(200),
        || async {
            let c = clusters
                .get("unreachable")
                .await
                .map_err(|e| e.to_string())?;
            match (condition(&c, "Ready"), condition(&c, "Imported")) {
                (Some(_), Some(_)) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await
    .expect("both conditions");
}

/// Starts the agent with exactly what the Deployment's pod would get: its env, the bootstrap
/// Secret's values, its ServiceAccount's RBAC (through impersonation).
async fn agent_as_its_pod(
    downstream: &ControlPlane,
    deployment: Deployment,
    client_id: &str,
    work: &std::path::Path,
) -> ManagedProcess {
    let pod = deployment
        .spec
        .and_then(|s| s.template.spec)
        .expect("pod spec");
    let env = pod.containers[0].env.clone().unwrap_or_default();
    let pod_client_id = env
        .iter()
        .find(|e| e.name == "CLIENT_ID")
        .and_then(|e| e.value.clone());
    assert_eq!(pod_client_id.as_deref(), Some(client_id));
    let bootstrap = Api::<Secret>::namespaced(downstream.client(), AGENT_NAMESPACE)
        .get("fleet-agent-bootstrap")
        .await
        .expect("bootstrap secret");
    let values = bootstrap
        .data
        .and_then(|d| d.get("values.json").cloned())
        .expect("values.json");
    let values_path = work.join("values.json");
    std::fs::write(&values_path, &values.0).expect("values");
    let agent_kubeconfig = work.join("agent-kubeconfig");
    std::fs::write(
        &agent_kubeconfig,
        fleet_testkit::serialize_kubeconfig(&downstream.impersonating_kubeconfig(
            &format!("system:serviceaccount:{AGENT_NAMESPACE}:fleet-agent"),
            &["system:serviceaccounts", "system:authenticated"],
        ))
        .expect("kubeconfig"),
    )
    .expect("agent kubeconfig");
    let port = ports::free_port().expect("port");
    let mut agent = std::process::Command::new(
        fleet_testkit::process::workspace_binary("fleet-agent", "fleet-agent").expect("agent"),
    );
    agent
        .args([
            format!("--kubeconfig={}", agent_kubeconfig.display()),
            format!("--namespace={AGENT_NAMESPACE}"),
            "--registration-values".to_owned(),
            values_path.display().to_string(),
            format!("--metrics-bind-address=127.0.0.1:{port}"),
            format!("--health-bind-address=127.0.0.1:{port}"),
            "--heartbeat-interval=2s".to_owned(),
        ])
        .env("CLIENT_ID", client_id);
    ManagedProcess::spawn("agent", agent, &work.join("agent.log"), Lifetime::Owned).expect("agent")
}
