//! `fleet-agent`: deploys a downstream cluster's BundleDeployments. `--kubeconfig` is the
//! downstream cluster (where the agent is leader-elected and deploys); upstream access comes
//! from registration (`--registration-values`) or `--upstream-kubeconfig`. Two roles with a
//! Lease each: deploying (`fleet-agent`) and monitoring (`fleet-agent-monitor`), on different
//! replicas when there are two or more.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use fleet_agent::controller::{self, Deployments};
use fleet_agent::credentials;
use fleet_agent::deploy;
use fleet_agent::inspect::Inspector;
use fleet_agent::monitor;
use fleet_api::BundleDeployment;
use fleet_api::duration::parse_go_duration;
use fleet_deployer::Deployer;
use fleet_election::Leadership;
use fleet_render::render::Tools;
use fleet_render::target::ClusterInfo;
use fleet_runtime::events::Events;
use fleet_runtime::{Runtime, RuntimeArgs, WriteGate, Writer};
use kube::Api;

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
    let mut runtime = Runtime::new("fleet-agent", LEASE, &args.runtime)
        .await
        .context("starting fleet-agent")?;
    let downstream = runtime.client();
    let reconciles = fleet_runtime::Reconciles::register(runtime.registry_mut());
    let gate = fleet_runtime::WriteGate::new(MANAGER, runtime.registry_mut());
    let deployer = Deployer {
        tools: Tools {
            helm: args.helm.clone(),
            kustomize: args.kustomize.clone(),
            kube_version: None,
        },
        kubeconfig: args.runtime.kubeconfig.clone(),
    };
    let agent = Agent {
        args: Arc::new(args),
        downstream,
        deployer,
        reconciles,
        gate,
    };
    runtime.second_role(MONITOR_LEASE, {
        let agent = agent.clone();
        move |leadership| agent.clone().monitoring(leadership)
    });
    runtime
        .run(move |leadership| agent.clone().deploying(leadership))
        .await?;
    Ok(())
}

/// The field manager of the agent's writes.
const MANAGER: &str = "fleet-agent";
/// The reporting controller of the agent's Events.
const EVENTS_CONTROLLER: &str = "fleet.cattle.io/fleet-agent";
/// The deploying role's Lease (Fleet's agent Lease name).
const LEASE: &str = "fleet-agent";
/// The monitoring role's Lease.
const MONITOR_LEASE: &str = "fleet-agent-monitor";

/// Who may register this cluster upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Connect {
    /// The deploying role registers when no credentials are saved yet (one replica registers).
    MayRegister,
    /// The monitoring role waits for credentials the deploying role saved.
    Saved,
}

/// The upstream client and this agent's identity; `None` (after a pause, logged) while
/// there is none yet or the term ends.
async fn connect(
    args: &Args,
    downstream: &kube::Client,
    how: Connect,
    writer: &Writer,
    leadership: &Leadership,
) -> Option<(kube::Client, credentials::Identity)> {
    let connected = match (
        &args.upstream_kubeconfig,
        &args.cluster_namespace,
        &args.cluster_name,
    ) {
        (path, Some(ns), Some(name)) => {
            credentials::direct(path.as_deref(), downstream, ns, name).await
        }
        _ => {
            let identity = match how {
                Connect::MayRegister => {
                    credentials::obtain(
                        writer,
                        downstream,
                        &args.runtime.namespace,
                        args.registration_values.as_deref(),
                        args.client_id.as_deref(),
                    )
                    .await
                }
                Connect::Saved => credentials::saved(downstream, &args.runtime.namespace)
                    .await
                    .and_then(|saved| {
                        saved.ok_or_else(|| {
                            credentials::CredentialsError::Config(
                                "not registered yet: the deploying replica registers".to_owned(),
                            )
                        })
                    }),
            };
            match identity {
                Ok(identity) => identity.client().await.map(|client| (client, identity)),
                Err(e) => Err(e),
            }
        }
    };
    match connected {
        Ok(connected) => Some(connected),
        Err(error) => {
            tracing::error!(lease = %leadership.lease(), %error, "no upstream identity; retrying in 10s");
            tokio::select! {
                () = leadership.cancelled() => {}
                () = tokio::time::sleep(Duration::from_secs(10)) => {}
            }
            None
        }
    }
}

/// What both roles need.
#[derive(Clone)]
struct Agent {
    args: Arc<Args>,
    downstream: kube::Client,
    deployer: Deployer,
    reconciles: fleet_runtime::Reconciles,
    gate: WriteGate,
}

impl Agent {
    /// The deploying role: registration, heartbeat, and the BundleDeployment deploys.
    async fn deploying(self, leadership: Leadership) {
        let Self {
            args,
            downstream,
            deployer,
            reconciles,
            gate,
        } = self;
        let writer = gate.writer(leadership.clone());
        // Registration happens while leading, as in Fleet: one replica registers.
        let Some((upstream, identity)) = connect(
            &args,
            &downstream,
            Connect::MayRegister,
            &writer,
            &leadership,
        )
        .await
        else {
            return;
        };
        tracing::info!(cluster = %identity.cluster_name, namespace = %identity.deployment_namespace, "connected upstream");
        let heartbeat = fleet_agent::heartbeat::run(
            writer.clone(),
            upstream.clone(),
            identity.cluster_namespace.clone(),
            identity.cluster_name.clone(),
            args.runtime.namespace.clone(),
            args.heartbeat_interval,
            leadership.token(),
        );
        let ctx = Arc::new(deploy::Context {
            upstream: upstream.clone(),
            inspector: Inspector::new(downstream, deployer),
            drift_interval: args.drift_interval,
            agent_namespace: args.runtime.namespace.clone(),
            cluster: ClusterInfo {
                name: identity.cluster_name.clone(),
                namespace: identity.cluster_namespace.clone(),
                ..ClusterInfo::default()
            },
            leadership: leadership.clone(),
            writer,
            events: Events::new(upstream.clone(), EVENTS_CONTROLLER),
        });
        let on = Deployments {
            api: Api::<BundleDeployment>::namespaced(upstream, &identity.deployment_namespace),
            workers: args.workers,
            reconciles,
        };
        let name = "bundledeployment-deploy";
        let (reconcile, policy) = (deploy::reconcile, deploy::error_policy);
        let deployments = controller::run(on, name, reconcile, policy, ctx, leadership.stopped());
        futures::join!(heartbeat, deployments);
    }

    /// The monitoring role: readiness and drift of every deployed release, reported upstream.
    async fn monitoring(self, leadership: Leadership) {
        let Self {
            args,
            downstream,
            deployer,
            reconciles,
            gate,
        } = self;
        let writer = gate.writer(leadership.clone());
        let Some((upstream, identity)) =
            connect(&args, &downstream, Connect::Saved, &writer, &leadership).await
        else {
            return;
        };
        tracing::info!(cluster = %identity.cluster_name, "monitoring deployed bundles");
        let ctx = Arc::new(monitor::Context {
            upstream: upstream.clone(),
            inspector: Inspector::new(downstream, deployer),
            writer,
            drift_interval: args.drift_interval,
        });
        let on = Deployments {
            api: Api::<BundleDeployment>::namespaced(upstream, &identity.deployment_namespace),
            workers: args.workers,
            reconciles,
        };
        let name = "bundledeployment-monitor";
        let (reconcile, policy) = (monitor::reconcile, monitor::error_policy);
        controller::run(on, name, reconcile, policy, ctx, leadership.stopped()).await;
    }
}
