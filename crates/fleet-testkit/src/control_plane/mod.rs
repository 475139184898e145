//! A real Kubernetes control plane as local processes: etcd, kube-apiserver and
//! kube-controller-manager (service-account, token, namespace and garbage-collector controllers).
//!
//! What controller-runtime's envtest does, plus the controller manager, because fleet-rs relies
//! on garbage collection, namespace deletion and ServiceAccount token Secrets
//! (ARCHITECTURE.md section 3). By default no kubelet and no scheduler: no pod ever runs.
//! [`ControlPlaneBuilder::with_nodes`] makes a plane that [`crate::node::Node`]s can join: it
//! serves on [`crate::network::HOST_IP`] with the `kubernetes` Service routed to it, authorizes
//! kubelets as nodes, and runs kube-scheduler and the controllers pods need.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

use crate::certs::CertAuthority;
use crate::network::{ClusterNetwork, HOST_IP};
use crate::process::{Lifetime, ManagedProcess};
use crate::{Error, ports};

mod components;

use components::{Binaries, Layout, Pki};

/// The admin identity: full access through the `system:masters` group.
pub const ADMIN_USER: &str = "fleet-rs-admin";
const ADMIN_GROUP: &str = "system:masters";

/// How to start a [`ControlPlane`].
#[derive(Debug, Clone)]
pub struct ControlPlaneBuilder {
    name: String,
    state_dir: Option<PathBuf>,
    controller_manager: bool,
    nodes: bool,
    lifetime: Lifetime,
    ready_timeout: Duration,
    apiserver_args: Vec<String>,
}

/// The controllers of kube-controller-manager that every plane runs.
const BASE_CONTROLLERS: &str = "serviceaccount-controller,serviceaccount-token-controller,namespace-controller,garbage-collector-controller";
/// The ones pods need besides (NODES.md, trap 4): workloads, endpoints, disruption budgets,
/// node lifecycle and the `kube-root-ca.crt` ConfigMap every token volume mounts.
const NODE_CONTROLLERS: &str = "deployment-controller,replicaset-controller,endpoints-controller,endpointslice-controller,endpointslice-mirroring-controller,daemonset-controller,statefulset-controller,job-controller,disruption-controller,pod-garbage-collector-controller,node-lifecycle-controller,taint-eviction-controller,ttl-controller,root-ca-certificate-publisher-controller";

impl Default for ControlPlaneBuilder {
    fn default() -> Self {
        Self {
            name: "fleet-rs".to_owned(),
            state_dir: None,
            controller_manager: true,
            nodes: false,
            lifetime: Lifetime::Owned,
            ready_timeout: Duration::from_secs(60),
            apiserver_args: Vec::new(),
        }
    }
}

impl ControlPlaneBuilder {
    /// The cluster's name in the kubeconfig (and etcd's member name).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Keep state (certificates, etcd data, logs, kubeconfig) in this directory instead of a
    /// temporary one that is removed on drop.
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = Some(dir.into());
        self
    }

    /// Whether to run kube-controller-manager (default: yes).
    pub fn controller_manager(mut self, enabled: bool) -> Self {
        self.controller_manager = enabled;
        self
    }

    /// Prepares the plane for [`crate::node::Node`]s (see the module doc); implies the
    /// controller manager.
    pub fn with_nodes(mut self) -> Self {
        self.nodes = true;
        self.controller_manager = true;
        self
    }

    /// [`Lifetime::Detached`] leaves the processes running after the value is dropped.
    pub fn lifetime(mut self, lifetime: Lifetime) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// More kube-apiserver flags (feature gates, `--runtime-config`) for a test that needs
    /// them.
    pub fn apiserver_args(mut self, args: &[&str]) -> Self {
        self.apiserver_args
            .extend(args.iter().map(|a| (*a).to_owned()));
        self
    }

    /// How long to wait for `/readyz` (default 60 s).
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// Starts the processes and waits until the API server is ready. A port taken between
    /// choosing it and binding it (another test picked the same one) is retried.
    pub async fn start(self) -> Result<ControlPlane, Error> {
        let binaries = Binaries::locate(self.controller_manager, self.nodes)?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.start_once(&binaries).await {
                Err(Error::ProcessExited { log_tail, .. })
                    if attempt < 3 && log_tail.contains("address already in use") =>
                {
                    tracing::warn!(attempt, "control-plane port was taken; retrying");
                }
                other => return other,
            }
        }
    }

    /// The plane's state directory: the one given, or a temporary one (removed on drop).
    fn dir(&self) -> Result<(PathBuf, Option<tempfile::TempDir>), Error> {
        if let Some(dir) = &self.state_dir {
            fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            return Ok((dir.clone(), None));
        }
        let temp = tempfile::Builder::new()
            .prefix("fleet-rs-plane-")
            .tempdir()
            .map_err(|e| Error::io(Path::new("tempdir"), e))?;
        Ok((temp.path().to_owned(), Some(temp)))
    }

    async fn start_once(&self, binaries: &Binaries) -> Result<ControlPlane, Error> {
        let started = Instant::now();
        let (dir, temp) = self.dir()?;
        let mut network = self.nodes.then(ClusterNetwork::claim).transpose()?;
        let pki = Pki::generate(&dir.join("pki"), network.as_ref())?;
        let [etcd_port, peer_port, api_port] = ports::free_ports()?;
        let host = match network {
            Some(_) => HOST_IP.to_string(),
            None => "127.0.0.1".to_owned(),
        };
        let server = format!("https://{host}:{api_port}");
        let admin = pki.ca.client_cert(ADMIN_USER, &[ADMIN_GROUP])?;
        let kubeconfig = kubeconfig(&self.name, &server, &pki.ca.cert_pem(), &admin)?;
        let kubeconfig_path = dir.join("kubeconfig");
        write(&kubeconfig_path, &serialize_kubeconfig(&kubeconfig)?)?;

        let layout = Layout {
            name: &self.name,
            dir: &dir,
            pki: &pki,
            host: &host,
            server: &server,
            kubeconfig: &kubeconfig_path,
            ports: [etcd_port, peer_port, api_port],
            network: network.as_ref(),
        };
        let deadline = Instant::now() + self.ready_timeout;
        let spawn = |name: &str, command: Command| {
            ManagedProcess::spawn(
                name,
                command,
                &dir.join(format!("{name}.log")),
                self.lifetime,
            )
        };
        let mut processes = vec![spawn("etcd", components::etcd(&binaries.etcd, &layout))?];
        wait_until("etcd /health", &mut processes, deadline, || {
            etcd_healthy(etcd_port)
        })
        .await?;
        let mut apiserver = components::apiserver(&binaries.apiserver, &layout);
        if binaries.controller_manager.is_none() {
            // Without the ServiceAccount controller no `default` ServiceAccount appears, and
            // the admission plugin would refuse every pod-bearing object (envtest's choice).
            apiserver.arg("--disable-admission-plugins=ServiceAccount");
        }
        apiserver.args(&self.apiserver_args);
        processes.push(spawn("kube-apiserver", apiserver)?);
        let client = client_from(&kubeconfig).await?;
        wait_until("kube-apiserver /readyz", &mut processes, deadline, || {
            api_ready(&client)
        })
        .await?;
        if let Some(binary) = &binaries.controller_manager {
            let kcm = components::controller_manager(binary, &layout);
            processes.push(spawn("kube-controller-manager", kcm)?);
            wait_until(
                "kube-controller-manager (ServiceAccount default/default)",
                &mut processes,
                deadline,
                || default_service_account_exists(&client),
            )
            .await?;
        }
        if let Some(scheduler) = binaries.scheduler.as_ref().filter(|_| network.is_some()) {
            let command = components::scheduler(scheduler, &layout);
            processes.push(spawn("kube-scheduler", command)?);
        }
        if let Some(network) = network.as_mut().filter(|_| binaries.scheduler.is_some()) {
            network.route_kubernetes_service(api_port)?;
        }
        tracing::info!(name = %self.name, %server, elapsed = ?started.elapsed(), "control plane ready");
        Ok(ControlPlane {
            name: self.name.clone(),
            dir,
            _temp: temp,
            processes,
            kubeconfig,
            kubeconfig_path,
            server,
            ca: pki.ca,
            network,
            client,
            startup: started.elapsed(),
        })
    }
}

/// A running control plane; stopped (and its temp dir removed) on drop.
pub struct ControlPlane {
    name: String,
    dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    processes: Vec<ManagedProcess>,
    kubeconfig: Kubeconfig,
    kubeconfig_path: PathBuf,
    server: String,
    ca: CertAuthority,
    network: Option<ClusterNetwork>,
    client: Client,
    startup: Duration,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("name", &self.name)
            .field("server", &self.server)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl ControlPlane {
    /// Starts a control plane with the defaults: temp dir, controller manager, owned processes.
    pub async fn start() -> Result<Self, Error> {
        Self::builder().start().await
    }

    pub fn builder() -> ControlPlaneBuilder {
        ControlPlaneBuilder::default()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The API server URL (`https://127.0.0.1:PORT`).
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The state directory (certificates, etcd data, logs, kubeconfig).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How long the plane took from spawning etcd to ready.
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    /// The admin kubeconfig file.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig_path
    }

    /// The admin kubeconfig.
    pub fn kubeconfig(&self) -> &Kubeconfig {
        &self.kubeconfig
    }

    /// The admin kubeconfig with another server URL (e.g. a [`crate::TcpProxy`] in front of
    /// the API server), written to `path` for a process to use.
    pub fn write_kubeconfig_via(&self, server: &str, path: &Path) -> Result<(), Error> {
        let mut kubeconfig = self.kubeconfig.clone();
        for named in &mut kubeconfig.clusters {
            if let Some(cluster) = named.cluster.as_mut() {
                cluster.server = Some(server.to_owned());
            }
        }
        write(path, &serialize_kubeconfig(&kubeconfig)?)
    }

    /// The API server's socket address.
    pub fn api_addr(&self) -> Result<std::net::SocketAddr, Error> {
        let addr = self.server.trim_start_matches("https://");
        addr.parse().map_err(|e| Error::Config {
            message: format!("server address {addr}: {e}"),
        })
    }

    /// The PEM file of the plane's CA (what clients of its API server trust).
    pub fn ca_cert_path(&self) -> PathBuf {
        self.dir().join("pki").join("ca.crt")
    }

    /// The plane's CA (what signs node identities).
    pub fn ca(&self) -> &CertAuthority {
        &self.ca
    }

    /// The plane's share of the host network, when it was started [`ControlPlaneBuilder::with_nodes`].
    pub fn network(&self) -> Option<&ClusterNetwork> {
        self.network.as_ref()
    }

    /// A client with the admin identity (`system:masters`).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// A kubeconfig for a user authenticated by a client certificate signed by the plane's CA
    /// (a real identity, not impersonation).
    pub fn user_kubeconfig(&self, user: &str, groups: &[&str]) -> Result<Kubeconfig, Error> {
        let cert = self.ca.client_cert(user, groups)?;
        kubeconfig(&self.name, &self.server, &self.ca.cert_pem(), &cert)
    }

    /// A client for a certificate-authenticated user.
    pub async fn user_client(&self, user: &str, groups: &[&str]) -> Result<Client, Error> {
        client_from(&self.user_kubeconfig(user, groups)?).await
    }

    /// A client that authenticates with a bearer token (e.g. a ServiceAccount token that a
    /// controller issued), trusting the plane's CA.
    pub async fn token_client(&self, token: &str) -> Result<Client, Error> {
        let mut kubeconfig = self.kubeconfig.clone();
        let auth: kube::config::AuthInfo =
            serde_json::from_value(serde_json::json!({ "token": token })).map_err(|e| {
                Error::Config {
                    message: format!("token kubeconfig: {e}"),
                }
            })?;
        for named in &mut kubeconfig.auth_infos {
            named.auth_info = Some(auth.clone());
        }
        client_from(&kubeconfig).await
    }

    /// The admin kubeconfig, impersonating `user` with `groups`.
    pub fn impersonating_kubeconfig(&self, user: &str, groups: &[&str]) -> Kubeconfig {
        let mut kubeconfig = self.kubeconfig.clone();
        for named in &mut kubeconfig.auth_infos {
            if let Some(auth) = named.auth_info.as_mut() {
                auth.impersonate = Some(user.to_owned());
                auth.impersonate_groups = Some(groups.iter().map(|g| (*g).to_owned()).collect());
            }
        }
        kubeconfig
    }

    /// A client that impersonates `user` with `groups`, as the admin.
    pub async fn impersonating_client(&self, user: &str, groups: &[&str]) -> Result<Client, Error> {
        client_from(&self.impersonating_kubeconfig(user, groups)).await
    }

    /// A client that acts as the ServiceAccount `namespace/name`, with the groups the API
    /// server gives ServiceAccount tokens.
    pub async fn service_account_client(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Client, Error> {
        let user = format!("system:serviceaccount:{namespace}:{name}");
        let ns_group = format!("system:serviceaccounts:{namespace}");
        self.impersonating_client(
            &user,
            &["system:serviceaccounts", &ns_group, "system:authenticated"],
        )
        .await
    }

    /// The last lines of every process's log, for error messages.
    pub fn logs_tail(&self, lines: usize) -> String {
        logs_tail(&self.processes, lines)
    }

    /// One of the plane's processes by name (`etcd`, `kube-apiserver`,
    /// `kube-controller-manager`), e.g. to signal or stop it.
    pub fn process_mut(&mut self, name: &str) -> Option<&mut ManagedProcess> {
        self.processes.iter_mut().find(|p| p.name() == name)
    }

    /// Kills the plane's process `name` (`etcd`, `kube-apiserver`) and starts it again with
    /// the same flags, ports and data, then waits until the API server is ready again: the
    /// restarts an operator's cluster goes through, under the running components.
    pub async fn restart(&mut self, name: &str, timeout: Duration) -> Result<(), Error> {
        crate::faults::process(self, name)?.restart()?;
        let client = self.client.clone();
        wait_until(
            "kube-apiserver /readyz after a restart",
            &mut self.processes,
            Instant::now() + timeout,
            || api_ready(&client),
        )
        .await
    }

    /// Leaves the processes running and returns their pids (`cargo xtask controlplane up`).
    pub fn detach(mut self) -> Vec<(String, u32)> {
        self._temp.take().map(tempfile::TempDir::keep);
        if let Some(network) = self.network.take() {
            network.detach();
        }
        std::mem::take(&mut self.processes)
            .into_iter()
            .filter_map(|p| {
                let name = p.name().to_owned();
                p.detach().map(|pid| (name, pid))
            })
            .collect()
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        // Reverse start order: controller manager, API server, then etcd.
        while let Some(mut process) = self.processes.pop() {
            process.kill();
        }
    }
}

fn logs_tail(processes: &[ManagedProcess], lines: usize) -> String {
    processes
        .iter()
        .map(|p| {
            format!(
                "--- {} ({}) ---\n{}",
                p.name(),
                p.log_path().display(),
                p.log_tail(lines)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn check_all_running(processes: &mut [ManagedProcess]) -> Result<(), Error> {
    processes
        .iter_mut()
        .try_for_each(ManagedProcess::check_running)
}

const POLL: Duration = Duration::from_millis(50);

/// Probes until `probe` answers `Ok`, failing early if a process exits and with the logs' tails
/// when `deadline` passes.
async fn wait_until<F, Fut>(
    what: &str,
    processes: &mut [ManagedProcess],
    deadline: Instant,
    mut probe: F,
) -> Result<(), Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    loop {
        check_all_running(processes)?;
        let last = match probe().await {
            Ok(()) => return Ok(()),
            Err(last) => last,
        };
        if Instant::now() > deadline {
            return Err(Error::Timeout {
                what: what.to_owned(),
                detail: format!("last answer: {last}\n{}", logs_tail(processes, 20)),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn etcd_healthy(port: u16) -> Result<(), String> {
    match crate::http_get(port, "/health").await {
        Ok(body) if body.contains("\"health\":\"true\"") => Ok(()),
        Ok(body) => Err(body),
        Err(e) => Err(e.to_string()),
    }
}

async fn api_ready(client: &Client) -> Result<(), String> {
    let request = http::Request::get("/readyz")
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    match client.request_text(request).await {
        Ok(body) if body.trim() == "ok" => Ok(()),
        Ok(body) => Err(body),
        Err(e) => Err(e.to_string()),
    }
}

/// The ServiceAccount controller creating `default/default` proves that the controller
/// manager is up and connected.
async fn default_service_account_exists(client: &Client) -> Result<(), String> {
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    match accounts.get_opt("default").await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err("no ServiceAccount default/default yet".to_owned()),
        Err(e) => Err(e.to_string()),
    }
}

fn write(path: &Path, content: &str) -> Result<(), Error> {
    fs::write(path, content).map_err(|e| Error::io(path, e))
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// A single-context kubeconfig with embedded certificate data.
fn kubeconfig(
    cluster: &str,
    server: &str,
    ca_pem: &str,
    user: &crate::certs::CertPair,
) -> Result<Kubeconfig, Error> {
    let doc = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster, "cluster": {
            "server": server,
            "certificate-authority-data": b64(ca_pem),
        }}],
        "users": [{"name": cluster, "user": {
            "client-certificate-data": b64(&user.cert_pem),
            "client-key-data": b64(&user.key_pem),
        }}],
        "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": cluster}}],
        "current-context": cluster,
    });
    Kubeconfig::from_yaml(&doc.to_string()).map_err(|e| Error::Config {
        message: format!("generated kubeconfig does not parse: {e}"),
    })
}

/// A kubeconfig as YAML, the form kubectl users expect in a file.
pub fn serialize_kubeconfig(kubeconfig: &Kubeconfig) -> Result<String, Error> {
    serde_saphyr::to_string(kubeconfig).map_err(|e| Error::Config {
        message: format!("kubeconfig does not serialise: {e}"),
    })
}

/// A client for a kubeconfig (its current context).
pub async fn client_from(kubeconfig: &Kubeconfig) -> Result<Client, Error> {
    let config = Config::from_custom_kubeconfig(kubeconfig.clone(), &KubeConfigOptions::default())
        .await
        .map_err(|e| Error::Config {
            message: format!("kubeconfig: {e}"),
        })?;
    Client::try_from(config).map_err(Error::Kube)
}
