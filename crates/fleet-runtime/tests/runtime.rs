//! The shared runtime on a real control plane: admin endpoints report the election role and
//! metrics; a shut-down leader hands over to the other replica.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use clap::Parser;
use fleet_runtime::{Runtime, RuntimeArgs};
use fleet_testkit::{ControlPlane, eventually, http_get, ports};
use serde_json::Value;

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    runtime: RuntimeArgs,
}

fn args(plane: &ControlPlane, port: u16, identity: &str) -> RuntimeArgs {
    Cli::parse_from([
        "test".to_owned(),
        format!("--kubeconfig={}", plane.kubeconfig_path().display()),
        "--namespace=default".to_owned(),
        format!("--metrics-bind-address=127.0.0.1:{port}"),
        format!("--health-bind-address=127.0.0.1:{port}"),
        format!("--election-identity={identity}"),
        "--election-lease-duration=3s".to_owned(),
        "--election-renew-deadline=2s".to_owned(),
        "--election-retry-period=500ms".to_owned(),
    ])
    .runtime
}

async fn ready(port: u16) -> Value {
    let body = http_get(port, "/readyz").await.expect("readyz answers");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

async fn wait_role(port: u16, role: &str) -> Value {
    eventually(
        &format!("role {role} on :{port}"),
        Duration::from_secs(30),
        Duration::from_millis(50),
        || async {
            match http_get(port, "/readyz").await {
                Ok(body) => {
                    let value: Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
                    if value["role"] == role {
                        Ok(value)
                    } else {
                        Err(body)
                    }
                }
                Err(e) => Err(e.to_string()),
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn admin_endpoints_report_roles_and_leadership_moves_on_shutdown() {
    let plane = ControlPlane::builder()
        .controller_manager(false)
        .start()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let [port_a, port_b] = ports::free_ports().expect("ports");
    let terms = Arc::new(AtomicUsize::new(0));

    let start = |port: u16, identity: &'static str| {
        let args = args(&plane, port, identity);
        let terms = terms.clone();
        async move {
            let runtime = Runtime::new("test-component", "test-runtime", &args)
                .await
                .expect("runtime");
            let shutdown = runtime.shutdown_token();
            let task = tokio::spawn(runtime.run(move |leadership| {
                terms.fetch_add(1, Ordering::SeqCst);
                async move { leadership.cancelled().await }
            }));
            (shutdown, task)
        }
    };

    let (stop_a, task_a) = start(port_a, "replica-a").await;
    let a = wait_role(port_a, "leader").await;
    assert_eq!(a["identity"], "replica-a");
    assert_eq!(a["component"], "test-component");
    let (stop_b, task_b) = start(port_b, "replica-b").await;
    let b = wait_role(port_b, "standby").await;
    assert_eq!(b["leader"], "replica-a", "a standby names the leader");
    assert_eq!(http_get(port_a, "/healthz").await.expect("healthz"), "ok");

    let metrics = http_get(port_a, "/metrics").await.expect("metrics");
    assert!(
        metrics.contains("fleet_leader_is_leader{lease=\"test-runtime\"} 1"),
        "{metrics}"
    );
    let metrics_b = http_get(port_b, "/metrics").await.expect("metrics");
    assert!(
        metrics_b.contains("fleet_leader_is_leader{lease=\"test-runtime\"} 0"),
        "{metrics_b}"
    );

    stop_a.cancel();
    task_a.await.expect("a joins").expect("a stops cleanly");
    wait_role(port_b, "leader").await;
    let metrics_b = http_get(port_b, "/metrics").await.expect("metrics");
    assert!(
        metrics_b.contains("fleet_leader_failover_seconds_count{lease=\"test-runtime\"} 1"),
        "{metrics_b}"
    );
    assert_eq!(terms.load(Ordering::SeqCst), 2, "one term each");
    assert_eq!(ready(port_b).await["identity"], "replica-b");

    stop_b.cancel();
    task_b.await.expect("b joins").expect("b stops cleanly");
}
