//! The process runtime: set up once, then run the reconcilers while leading.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::{Arc, Mutex};

use fleet_election::shards::{Claims, ShardConfig, ShardMetrics, ShardSet};
use fleet_election::{
    ElectionConfig, ElectionMetrics, Elector, Leadership, Role, Strategy, run_while_leading,
};
use futures::future::BoxFuture;
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
    second: Option<SecondRole>,
    /// The dynamic shards held here ([`Runtime::held_shards`]).
    held: watch::Sender<BTreeSet<u32>>,
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
    /// Logging, the client and the registry for `component`, which leads through `lease`
    /// (with `--shard-id`: the shard's Lease, `lease-<id>`).
    pub async fn new(component: &str, lease: &str, args: &RuntimeArgs) -> Result<Self, Error> {
        init_tracing(args.log_format);
        let client = client(args).await?;
        let shard = args.shard();
        if let Some(id) = shard.id() {
            tracing::info!(component, shard = id, "handling only objects of this shard");
        }
        Ok(Self {
            component: component.to_owned(),
            lease: shard.lease(lease),
            args: args.clone(),
            client,
            registry: Registry::default(),
            shutdown: CancellationToken::new(),
            second: None,
            held: watch::Sender::new(BTreeSet::new()),
        })
    }

    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The dynamic shards this replica holds, as they change: empty until
    /// [`Runtime::run_sharded`] runs (and always without dynamic shards). For what starts
    /// before the work and follows the shards, such as caches of the held shards' objects.
    pub fn held_shards(&self) -> watch::Receiver<BTreeSet<u32>> {
        self.held.subscribe()
    }

    /// Where reconcilers register their metrics (before [`run`](Self::run)).
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// A token that, cancelled, shuts the process down as SIGTERM would.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// A second role of this binary, with a Lease of its own named `lease`: `work` runs
    /// during every term this replica holds it. With two or more replicas the two roles are
    /// kept on different replicas (a replica holding neither asks the one holding both to hand
    /// this one over: [`fleet_election::handover`]); a replica alone holds both.
    pub fn second_role<W, Fut>(&mut self, lease: &str, mut work: W)
    where
        W: FnMut(Leadership) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.second = Some(SecondRole {
            lease: lease.to_owned(),
            work: Box::new(move |leadership| Box::pin(work(leadership))),
        });
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
        let second = match self.second.take() {
            Some(second) => {
                let config = self
                    .args
                    .election
                    .config(&second.lease, &self.args.namespace)?;
                Some((second, config))
            }
            None => None,
        };
        let metrics = ElectionMetrics::register(&mut self.registry);
        let registry = Arc::new(Mutex::new(std::mem::take(&mut self.registry)));
        if self.args.leader_elect {
            self.run_elected(work, election, second, metrics, registry)
                .await
        } else {
            self.run_unelected(work, &election.identity, second.map(|(s, _)| s), registry)
                .await
        }
    }

    /// Every role's work at once, for a single replica that does not elect.
    async fn run_unelected<W, Fut>(
        self,
        mut work: W,
        identity: &str,
        second: Option<SecondRole>,
        registry: Arc<Mutex<Registry>>,
    ) -> Result<(), Error>
    where
        W: FnMut(Leadership) -> Fut,
        Fut: Future<Output = ()>,
    {
        tracing::warn!(component = %self.component, "leader election disabled: run a single replica");
        let leadership = Leadership::unconditional(&self.lease, identity);
        let (_roles_tx, roles) = watch::channel(Role::Leading(leadership.clone()));
        let mut leases = vec![(self.lease.clone(), roles.clone())];
        let second = second.map(|second| {
            let leadership = Leadership::unconditional(&second.lease, identity);
            let (tx, rx) = watch::channel(Role::Leading(leadership.clone()));
            leases.push((second.lease.clone(), rx));
            (second, leadership, tx)
        });
        let ready = ReadyState {
            component: self.component.clone(),
            identity: identity.to_owned(),
            roles,
            leases,
            shards: None,
        };
        let servers =
            admin::serve(&self.addresses(), registry, ready, self.shutdown.clone()).await?;
        let terms: Vec<Leadership> = std::iter::once(leadership.clone())
            .chain(second.iter().map(|(_, l, _)| l.clone()))
            .collect();
        let stop = {
            let shutdown = self.shutdown.clone();
            async move {
                shutdown.cancelled().await;
                terms.iter().for_each(Leadership::stop);
            }
        };
        let second_work = async move {
            if let Some((mut second, leadership, _roles)) = second {
                (second.work)(leadership).await;
            }
        };
        futures::join!(work(leadership), second_work, stop);
        join_servers(servers).await;
        Ok(())
    }

    /// Each role's work during the terms this replica holds the role's Lease.
    async fn run_elected<W, Fut>(
        self,
        work: W,
        election: ElectionConfig,
        second: Option<(SecondRole, ElectionConfig)>,
        metrics: ElectionMetrics,
        registry: Arc<Mutex<Registry>>,
    ) -> Result<(), Error>
    where
        W: FnMut(Leadership) -> Fut,
        Fut: Future<Output = ()>,
    {
        ensure_namespace(&self.client, &self.args.namespace, &self.component).await?;
        let identity = election.identity.clone();
        let elector = match self.args.election.strategy {
            Strategy::Standard => {
                Elector::new(self.client.clone(), election, metrics.clone()).spawn()
            }
            Strategy::Coordinated => {
                fleet_election::coordinated::spawn(
                    self.client.clone(),
                    election,
                    metrics.clone(),
                    &self.args.election.binary_version,
                    self.shutdown.clone(),
                )
                .await
            }
        };
        let mut leases = vec![(self.lease.clone(), elector.roles())];
        let second = second.map(|(second, config)| {
            let period = config.timings.retry_period;
            let handle = Elector::new(self.client.clone(), config, metrics).spawn();
            leases.push((second.lease.clone(), handle.roles()));
            let apart = fleet_election::handover::prefer_apart(
                elector.roles(),
                handle.roles(),
                handle.handover_requester(),
                period,
                self.shutdown.clone(),
            );
            (second, handle, apart)
        });
        let ready = ReadyState {
            component: self.component.clone(),
            identity,
            roles: elector.roles(),
            leases,
            shards: None,
        };
        let servers =
            admin::serve(&self.addresses(), registry, ready, self.shutdown.clone()).await?;
        let shutdown = self.shutdown.clone();
        let second_work = async move {
            if let Some((second, handle, apart)) = second {
                futures::join!(run_while_leading(handle, shutdown, second.work), apart);
            }
        };
        futures::join!(
            run_while_leading(elector, self.shutdown.clone(), work),
            second_work
        );
        self.shutdown.cancel();
        join_servers(servers).await;
        tracing::info!(component = %self.component, "stopped");
        Ok(())
    }

    /// Runs `work` under claims: with `shards` > 0, once, over dynamic shards (every object
    /// under its shard's claim, [`run_sharded`](Self::run_sharded)); otherwise once per term
    /// of the binary's Lease (every object under that term, [`run`](Self::run)). `work` gets
    /// the claims, the token that ends its work, and the shard set (when sharded).
    pub async fn run_claimed<W, Fut>(self, shards: u32, mut work: W) -> Result<(), Error>
    where
        W: FnMut(Claims, CancellationToken, Option<ShardSet>) -> Fut,
        Fut: Future<Output = ()>,
    {
        if shards > 0 {
            self.run_sharded(shards, move |set, stop| {
                work(Claims::Shards(set.clone()), stop, Some(set))
            })
            .await
        } else {
            self.run(move |leadership| {
                let stop = leadership.token();
                work(Claims::Leader(leadership), stop, None)
            })
            .await
        }
    }

    /// Runs `work` on every replica at once with `shards` dynamic shards spread over the live
    /// replicas ([`ShardSet`]): `work` writes for an object only under `ShardSet::claim` of its
    /// key, and stops when the token fires (SIGTERM/SIGINT); then every shard is released.
    pub async fn run_sharded<W, Fut>(mut self, shards: u32, work: W) -> Result<(), Error>
    where
        W: FnOnce(ShardSet, CancellationToken) -> Fut,
        Fut: Future<Output = ()>,
    {
        watch_signals(self.shutdown.clone())?;
        let election = self
            .args
            .election
            .config(&self.lease, &self.args.namespace)?;
        let metrics = ElectionMetrics::register(&mut self.registry);
        let shard_metrics = ShardMetrics::register(&mut self.registry);
        let registry = Arc::new(Mutex::new(std::mem::take(&mut self.registry)));
        ensure_namespace(&self.client, &self.args.namespace, &self.component).await?;
        let config = ShardConfig {
            base: self.lease.clone(),
            namespace: self.args.namespace.clone(),
            identity: election.identity.clone(),
            zone: zone(&self.client, &self.args.zone).await,
            shards,
            timings: election.timings,
        };
        tracing::info!(component = %self.component, shards, zone = %config.zone, "dynamic shards");
        let (set, released) = ShardSet::spawn(
            self.client.clone(),
            config,
            metrics,
            shard_metrics,
            self.shutdown.clone(),
        );
        tokio::spawn(forward_held(set.held_changes(), self.held.clone()));
        let (_roles_tx, roles) = watch::channel(Role::Standby { holder: None });
        let ready = ReadyState {
            component: self.component.clone(),
            identity: election.identity.clone(),
            roles,
            leases: Vec::new(),
            shards: Some(set.clone()),
        };
        let servers =
            admin::serve(&self.addresses(), registry, ready, self.shutdown.clone()).await?;
        work(set, self.shutdown.clone()).await;
        self.shutdown.cancel();
        let _ = released.await;
        join_servers(servers).await;
        tracing::info!(component = %self.component, "stopped");
        Ok(())
    }

    fn addresses(&self) -> [std::net::SocketAddr; 2] {
        [
            self.args.metrics_bind_address,
            self.args.health_bind_address,
        ]
    }
}

/// Passes the shards held here on to [`Runtime::held_shards`].
async fn forward_held(mut held: watch::Receiver<BTreeSet<u32>>, to: watch::Sender<BTreeSet<u32>>) {
    loop {
        to.send_replace(held.borrow_and_update().clone());
        if held.changed().await.is_err() {
            return;
        }
    }
}

/// A binary's second role ([`Runtime::second_role`]).
struct SecondRole {
    lease: String,
    work: Box<dyn FnMut(Leadership) -> BoxFuture<'static, ()> + Send>,
}

/// The namespace of the Lease must exist, or every replica would wait forever for a Lease
/// it cannot create: a missing one is created (as `kubectl create namespace` would), and an
/// identity that may not create it stops the process with what to do. An identity that may not
/// even read namespaces (a pod's ServiceAccount, whose namespace exists) is not checked.
async fn ensure_namespace(client: &Client, namespace: &str, component: &str) -> Result<(), Error> {
    use k8s_openapi::api::core::v1::Namespace;
    use kube::Api;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    match namespaces.get_opt(namespace).await {
        Ok(Some(_)) => return Ok(()),
        Ok(None) => {}
        Err(kube::Error::Api(status)) if status.code == 403 => return Ok(()),
        Err(error) => return Err(Error::Client(error)),
    }
    let mut object = Namespace::default();
    object.metadata.name = Some(namespace.to_owned());
    // Before any election: there is no claim yet.
    let writer = crate::WriteGate::unregistered(component).unclaimed("the namespace of the Lease");
    match writer.create(&namespaces, &object).await {
        Ok(_) => {
            tracing::info!(%namespace, "created the namespace of the Lease");
            Ok(())
        }
        Err(error) if error.is_conflict() => Ok(()),
        Err(error) if error.code() == Some(403) => Err(Error::Namespace {
            namespace: namespace.to_owned(),
        }),
        Err(error) => Err(Error::Write(error)),
    }
}

/// This replica's zone: `--zone`, else the `topology.kubernetes.io/zone` label of the node
/// named by `NODE_NAME` (the chart sets it from the downward API), else "" (zones unknown).
async fn zone(client: &Client, given: &str) -> String {
    if !given.is_empty() {
        return given.to_owned();
    }
    let Ok(node) = std::env::var("NODE_NAME") else {
        return String::new();
    };
    match kube::Api::<k8s_openapi::api::core::v1::Node>::all(client.clone())
        .get_metadata(&node)
        .await
    {
        Ok(meta) => meta
            .metadata
            .labels
            .and_then(|labels| labels.get("topology.kubernetes.io/zone").cloned())
            .unwrap_or_default(),
        Err(error) => {
            tracing::warn!(%node, %error, "cannot read this node's zone; shards spread without zones");
            String::new()
        }
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
