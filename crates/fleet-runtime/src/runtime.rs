//! The process runtime: set up once, then run the reconcilers while leading.

use std::future::Future;
use std::sync::{Arc, Mutex};

use fleet_election::{ElectionMetrics, Elector, Leadership, Role, run_while_leading};
use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, ReadyState};
use crate::{Error, RuntimeArgs, init_tracing};

/// One binary's process: client, metrics registry, configuration.
pub struct Runtime {
    component: String,
    lease: String,
    args: RuntimeArgs,
    client: Client,
    registry: Registry,
    shutdown: CancellationToken,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("component", &self.component)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// Logging, the client and the registry for `component`, which leads through `lease`.
    pub async fn new(component: &str, lease: &str, args: &RuntimeArgs) -> Result<Self, Error> {
        init_tracing(args.log_format);
        let client = client(args).await?;
        Ok(Self {
            component: component.to_owned(),
            lease: lease.to_owned(),
            args: args.clone(),
            client,
            registry: Registry::default(),
            shutdown: CancellationToken::new(),
        })
    }

    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// Where reconcilers register their metrics (before [`run`](Self::run)).
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// A token that, cancelled, shuts the process down as SIGTERM would.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Serves the admin endpoints, then runs `work` during every term this replica leads,
    /// until SIGTERM/SIGINT; then stops the work and releases the Lease.
    pub async fn run<W, Fut>(mut self, work: W) -> Result<(), Error>
    where
        W: FnMut(Leadership) -> Fut,
        Fut: Future<Output = ()>,
    {
        watch_signals(self.shutdown.clone())?;
        let election = self
            .args
            .election
            .config(&self.lease, &self.args.namespace)?;
        let identity = election.identity.clone();
        let metrics = ElectionMetrics::register(&mut self.registry);
        let registry = Arc::new(Mutex::new(self.registry));
        let addresses = [
            self.args.metrics_bind_address,
            self.args.health_bind_address,
        ];

        if !self.args.leader_elect {
            tracing::warn!(component = %self.component, "leader election disabled: run a single replica");
            let leadership = Leadership::unconditional(&self.lease, &identity);
            let (_roles_tx, roles) = watch::channel(Role::Leading(leadership.clone()));
            let ready = ReadyState {
                component: self.component.clone(),
                identity,
                roles,
            };
            let servers = admin::serve(&addresses, registry, ready, self.shutdown.clone()).await?;
            let stop = {
                let leadership = leadership.clone();
                let shutdown = self.shutdown.clone();
                async move {
                    shutdown.cancelled().await;
                    leadership.stop();
                }
            };
            let mut work = work;
            futures::join!(work(leadership), stop);
            join_servers(servers).await;
            return Ok(());
        }

        ensure_namespace(&self.client, &self.args.namespace).await?;
        let elector = Elector::new(self.client.clone(), election, metrics).spawn();
        let ready = ReadyState {
            component: self.component.clone(),
            identity,
            roles: elector.roles(),
        };
        let servers = admin::serve(&addresses, registry, ready, self.shutdown.clone()).await?;
        run_while_leading(elector, self.shutdown.clone(), work).await;
        self.shutdown.cancel();
        join_servers(servers).await;
        tracing::info!(component = %self.component, "stopped");
        Ok(())
    }
}

/// The namespace of the Lease must exist, or every replica would wait forever for a Lease
/// it cannot create: a missing one is created (as `kubectl create namespace` would), and an
/// identity that may not create it stops the process with what to do. An identity that may not
/// even read namespaces (a pod's ServiceAccount, whose namespace exists) is not checked.
async fn ensure_namespace(client: &Client, namespace: &str) -> Result<(), Error> {
    use k8s_openapi::api::core::v1::Namespace;
    use kube::Api;
    use kube::api::PostParams;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    match namespaces.get_opt(namespace).await {
        Ok(Some(_)) => return Ok(()),
        Ok(None) => {}
        Err(kube::Error::Api(status)) if status.code == 403 => return Ok(()),
        Err(error) => return Err(Error::Client(error)),
    }
    let mut object = Namespace::default();
    object.metadata.name = Some(namespace.to_owned());
    match namespaces.create(&PostParams::default(), &object).await {
        Ok(_) => {
            tracing::info!(%namespace, "created the namespace of the Lease");
            Ok(())
        }
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 403 => Err(Error::Namespace {
            namespace: namespace.to_owned(),
        }),
        Err(error) => Err(Error::Client(error)),
    }
}

async fn join_servers(servers: Vec<tokio::task::JoinHandle<()>>) {
    for server in servers {
        let _ = server.await;
    }
}

fn watch_signals(shutdown: CancellationToken) -> Result<(), Error> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).map_err(Error::Signal)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(Error::Signal)?;
    tokio::spawn(async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = interrupt.recv() => tracing::info!("SIGINT: shutting down"),
            () = shutdown.cancelled() => return,
        }
        shutdown.cancel();
    });
    Ok(())
}

/// The client: `--kubeconfig` (and `--context`) if given, else the in-cluster service account
/// or `$KUBECONFIG`/`~/.kube/config`, as kubectl would.
async fn client(args: &RuntimeArgs) -> Result<Client, Error> {
    let options = KubeConfigOptions {
        context: args.context.clone(),
        ..Default::default()
    };
    let config = match &args.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path).map_err(|e| Error::Kubeconfig {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|e| Error::Kubeconfig {
                    path: path.display().to_string(),
                    message: e.to_string(),
                })?
        }
        // A context names an entry of the default kubeconfig ($KUBECONFIG or ~/.kube/config).
        None if args.context.is_some() => kube::Config::from_kubeconfig(&options)
            .await
            .map_err(|e| Error::NoConfig(e.to_string()))?,
        None => kube::Config::infer()
            .await
            .map_err(|e| Error::NoConfig(e.to_string()))?,
    };
    Client::try_from(config).map_err(Error::Client)
}
