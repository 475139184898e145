//! Nodes joined to a real control plane run real pods (kubelet, containerd, runc, CNI).
//!
//! Needs root, runc and the CNI plugins; `cargo xtask test` runs it, other runs skip it unless
//! `FLEET_RS_NODE_TESTS=1`.

use std::time::Duration;

use fleet_testkit::node::{Node, NodeSpec, PAUSE_IMAGE, ZONE_LABEL};
use fleet_testkit::{ControlPlane, wait_for};
use k8s_openapi::api::core::v1::{Node as NodeObject, Pod};
use kube::Api;
use kube::api::{DeleteParams, PostParams};

fn enabled() -> bool {
    std::env::var_os("FLEET_RS_NODE_TESTS").is_some_and(|v| v == "1")
}

fn pod(name: &str, node: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": node},
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "pause", "image": PAUSE_IMAGE, "imagePullPolicy": "Never"}],
        },
    }))
    .expect("pod")
}

fn running_on(pod: &Pod) -> Option<(String, String)> {
    let status = pod.status.as_ref()?;
    if status.phase.as_deref() != Some("Running") {
        return None;
    }
    Some((
        pod.spec.as_ref()?.node_name.clone()?,
        status.pod_ip.clone()?,
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn zoned_nodes_run_pods_and_survive_a_node_loss() {
    if !enabled() {
        eprintln!("skipped: set FLEET_RS_NODE_TESTS=1 (root, runc and CNI plugins needed)");
        return;
    }
    let plane = ControlPlane::builder()
        .name("nodes")
        .with_nodes()
        .start()
        .await
        .expect("plane");
    let mut nodes = Vec::new();
    for (index, zone) in ["a", "b"].into_iter().enumerate() {
        let spec = NodeSpec {
            name: format!("node-{zone}"),
            zone: Some(zone.to_owned()),
            index: u8::try_from(index).expect("index"),
        };
        nodes.push(Node::start(&plane, spec).await.expect("node"));
    }
    let node_api: Api<NodeObject> = Api::all(plane.client());
    let labelled = node_api.get("node-b").await.expect("node-b");
    assert_eq!(
        labelled
            .metadata
            .labels
            .unwrap_or_default()
            .get(ZONE_LABEL)
            .map(String::as_str),
        Some("b")
    );

    let pods: Api<Pod> = Api::namespaced(plane.client(), "default");
    for node in ["node-a", "node-b"] {
        pods.create(&PostParams::default(), &pod(&format!("p-{node}"), node))
            .await
            .expect("create pod");
    }
    for node in ["node-a", "node-b"] {
        let running = wait_for(&pods, &format!("p-{node}"), Duration::from_secs(120), |p| {
            running_on(p).is_some()
        })
        .await
        .expect("pod running");
        let (on, ip) = running_on(&running).expect("running");
        assert_eq!(on, node);
        assert!(ip.starts_with("10."), "pod IP {ip}");
    }

    // Losing node-b: its kubelet stops reporting, then it comes back and runs its pod again.
    nodes[1].stop();
    nodes[1].restart().await.expect("restart");
    wait_for(&pods, "p-node-b", Duration::from_secs(120), |p| {
        running_on(p).is_some()
    })
    .await
    .expect("pod running again");
    pods.delete("p-node-a", &DeleteParams::default())
        .await
        .expect("delete");
}
