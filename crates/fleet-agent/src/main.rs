//! `fleet-agent`: deploys a downstream cluster's BundleDeployments. `--kubeconfig` is the
//! downstream cluster (where the agent is leader-elected and deploys); upstream access comes
//! from registration (`--registration-values`) or `--upstream-kubeconfig`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use fleet_agent::credentials;
use fleet_agent::deploy::{self, Context};
use fleet_api::BundleDeployment;
use fleet_deployer::Deployer;
use fleet_election::parse_go_duration;
use fleet_render::render::Tools;
use fleet_render::target::ClusterInfo;
use fleet_runtime::{Runtime, RuntimeArgs};
use kube::Api;
use kube::runtime::{Controller, controller, watcher};

#[derive(Debug, Parser)]
#[command(
    name = "fleet-agent",
    version,
    about = "Deploys a cluster's bundles (fleet-rs)"
)]
struct Args {
    #[command(flatten)]
    runtime: RuntimeArgs,
    /// A ClusterRegistrationToken's `values` (JSON or YAML) to register with.
    #[arg(long, env = "FLEET_REGISTRATION_VALUES")]
    registration_values: Option<PathBuf>,
    /// This cluster's stable ID (default: the UID of its kube-system namespace).
    #[arg(long, env = "CLIENT_ID")]
    client_id: Option<String>,
    /// Instead of registering: the Cluster this agent is (its namespace and name upstream)...
    #[arg(long, env = "FLEET_CLUSTER_NAMESPACE", requires = "cluster_name")]
    cluster_namespace: Option<String>,
    #[arg(long, env = "FLEET_CLUSTER_NAME", requires = "cluster_namespace")]
    cluster_name: Option<String>,
    /// ...and a kubeconfig of the management cluster (without it: this cluster is the
    /// management cluster).
    #[arg(long, env = "FLEET_UPSTREAM_KUBECONFIG", requires_all = ["cluster_namespace", "cluster_name"])]
    upstream_kubeconfig: Option<PathBuf>,
    /// How often the agent reports that it is alive.
    #[arg(long, env = "FLEET_HEARTBEAT_INTERVAL", default_value = "1m", value_parser = parse_go_duration)]
    heartbeat_interval: Duration,
    /// How often deployed bundles are checked for drift (and corrected with correctDrift).
    #[arg(long, env = "FLEET_DRIFT_INTERVAL", default_value = "1m", value_parser = parse_go_duration)]
    drift_interval: Duration,
    /// BundleDeployments deployed at once.
    #[arg(long, env = "BUNDLEDEPLOYMENT_RECONCILER_WORKERS", default_value_t = 4)]
    workers: u16,
    /// The helm binary.
    #[arg(long, env = "FLEET_HELM", default_value = "helm")]
    helm: PathBuf,
    /// The kustomize binary.
    #[arg(long, env = "FLEET_KUSTOMIZE", default_value = "kustomize")]
    kustomize: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = Runtime::new("fleet-agent", "fleet-agent", &args.runtime)
        .await
        .context("starting fleet-agent")?;
    let downstream = runtime.client();
    let deployer = Deployer {
        tools: Tools {
            helm: args.helm.clone(),
            kustomize: args.kustomize.clone(),
        },
        kubeconfig: args.runtime.kubeconfig.clone(),
    };
    let args = Arc::new(args);
    runtime
        .run(move |leadership| {
            let (args, downstream, deployer) = (args.clone(), downstream.clone(), deployer.clone());
            async move {
                // Registration happens while leading, as in Fleet: one replica registers.
                let connected = match (&args.upstream_kubeconfig, &args.cluster_namespace, &args.cluster_name) {
                    (path, Some(ns), Some(name)) => credentials::direct(path.as_deref(), &downstream, ns, name).await,
                    _ => match credentials::obtain(&downstream, &args.runtime.namespace, args.registration_values.as_deref(), args.client_id.as_deref()).await {
                        Ok(identity) => identity.client().await.map(|client| (client, identity)),
                        Err(e) => Err(e),
                    },
                };
                let (upstream, identity) = match connected {
                    Ok(connected) => connected,
                    Err(error) => {
                        tracing::error!(%error, "no upstream identity; retrying in 10s");
                        tokio::select! {
                            () = leadership.cancelled() => {}
                            () = tokio::time::sleep(Duration::from_secs(10)) => {}
                        }
                        return;
                    }
                };
                tracing::info!(cluster = %identity.cluster_name, namespace = %identity.deployment_namespace, "connected upstream");
                let heartbeat = fleet_agent::heartbeat::run(
                    upstream.clone(),
                    identity.cluster_namespace.clone(),
                    identity.cluster_name.clone(),
                    args.runtime.namespace.clone(),
                    args.heartbeat_interval,
                    leadership.token(),
                );
                let ctx = Arc::new(Context {
                    upstream: upstream.clone(),
                    downstream: downstream.clone(),
                    drift_interval: args.drift_interval,
                    kinds: fleet_agent::monitor::Kinds::default(),
                    manifests: fleet_agent::monitor::Manifests::default(),
                    agent_namespace: args.runtime.namespace.clone(),
                    deployer,
                    cluster: ClusterInfo {
                        name: identity.cluster_name.clone(),
                        namespace: identity.cluster_namespace.clone(),
                        ..ClusterInfo::default()
                    },
                    leadership: leadership.clone(),
                });
                let deployments = Controller::new(
                    Api::<BundleDeployment>::namespaced(upstream, &identity.deployment_namespace),
                    watcher::Config::default(),
                )
                .with_config(controller::Config::default().concurrency(args.workers))
                .graceful_shutdown_on(leadership.stopped())
                .run(deploy::reconcile, deploy::error_policy, ctx);
                futures::join!(heartbeat, fleet_runtime::drain_controller(deployments));
            }
        })
        .await?;
    Ok(())
}
