//! Nodes for local control planes: a kubelet with a containerd of its own, runc and CNI, joined
//! to a plane started [`crate::ControlPlaneBuilder::with_nodes`].
//!
//! Each node has its own containerd (root, state, socket; two kubelets must never share a
//! runtime), its own cgroup root in every cgroup v1 hierarchy (a kubelet removes pod cgroups it
//! does not own), its own kubelet ports and a CNI bridge with a /24 of its plane's range (see
//! [`crate::network`] for why nodes share the host's network namespace). The kubelet
//! authenticates as `system:node:<name>` (Node authorizer, NodeRestriction) and serves logs and
//! exec to the API server's client certificate. Cgroup v1 is what this machine kind has: the
//! kubelet runs with `failCgroupV1: false` and the cgroupfs driver. Root here lacks
//! CAP_SYS_RESOURCE, so containerd restricts OOM score adjustments and the kubelet keeps its own
//! at 0 (NODES.md, trap 1).
//!
//! [`Node::stop`] loses the node the way a powered-off machine does (kubelet, containerd, shims
//! and every container killed at once); [`Node::restart`] brings it back on the same state.

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node as NodeObject;
use kube::{Api, Client};
use serde_json::json;

mod host;

use host::{
    create_cgroup_root, kill_cgroup_tree, kill_matching, remove_cgroup_tree, unmount_under,
};

use crate::binaries::{self, Tool};
use crate::network::HOST_IP;
use crate::process::{Lifetime, ManagedProcess, run};
use crate::{ControlPlane, Error, ports};

/// The label kubelets put zones in (and the scheduler spreads by).
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
/// The sandbox image containerd 2.3 expects; built from Kubernetes' `pause.c` ([`pause_image`]).
pub const PAUSE_IMAGE: &str = "registry.k8s.io/pause:3.10.2";
const RUNC: &str = "/usr/sbin/runc";
const CNI_BIN_DIR: &str = "/usr/lib/cni";

/// What one node is: its name, its zone, its place in the plane's network.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub name: String,
    pub zone: Option<String>,
    /// 0..=255, distinct per plane: picks the pod subnet, bridge and kubelet ports.
    pub index: u8,
}

/// A running node; stopped and cleaned up (mounts, cgroups, bridge) on drop.
pub struct Node {
    spec: NodeSpec,
    dir: PathBuf,
    cgroup: String,
    healthz_port: u16,
    lifetime: Lifetime,
    processes: Vec<ManagedProcess>,
    client: Client,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("spec", &self.spec)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Node {
    /// Starts containerd and the kubelet, imports the pause image and waits for the Node to
    /// be Ready.
    pub async fn start(plane: &ControlPlane, spec: NodeSpec) -> Result<Self, Error> {
        Self::start_with(plane, spec, Lifetime::Owned).await
    }

    /// [`Node::start`] with a process lifetime (`cargo xtask controlplane up --nodes`).
    pub async fn start_with(
        plane: &ControlPlane,
        spec: NodeSpec,
        lifetime: Lifetime,
    ) -> Result<Self, Error> {
        let network = plane.network().ok_or_else(|| Error::Config {
            message: format!(
                "plane {} was not started with_nodes(): nodes cannot join it",
                plane.name()
            ),
        })?;
        for program in [RUNC, &format!("{CNI_BIN_DIR}/bridge")] {
            if !Path::new(program).is_file() {
                return Err(Error::Config {
                    message: format!(
                        "{program} is missing: install Debian's runc and containernetworking-plugins \
                         (`cargo xtask test` and `cargo xtask e2e --provider node` do it)"
                    ),
                });
            }
        }
        let dir = plane.dir().join("nodes").join(&spec.name);
        let cgroup = format!("fleetrs-s{}-{}", network.slot(), spec.name);
        let bridge = network.bridge(spec.index);
        let files = NodeFiles::new(&dir);
        // The kubelet's ports are free when chosen but may be taken before it binds them
        // (another test, an outgoing connection): then the node starts again with new ones.
        let mut attempt = 1;
        loop {
            let healthz_port = files.write(
                plane,
                &spec,
                &network.pod_subnet(spec.index),
                &bridge,
                &cgroup,
            )?;
            let mut node = Self {
                spec: spec.clone(),
                dir: dir.clone(),
                cgroup: cgroup.clone(),
                healthz_port,
                lifetime,
                processes: Vec::new(),
                client: plane.client(),
            };
            match node.boot().await {
                Ok(()) => return Ok(node),
                Err(error)
                    if attempt < 3 && error.to_string().contains("address already in use") =>
                {
                    eprintln!(
                        "fleet-testkit: node {}: a port was taken before the kubelet bound it; starting again",
                        spec.name
                    );
                    drop(node);
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Starts the node's processes, imports the pause image, waits for Ready.
    async fn boot(&mut self) -> Result<(), Error> {
        self.start_processes().await?;
        self.import_image(&pause_image()?)?;
        self.wait_ready(Duration::from_secs(120)).await
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn zone(&self) -> Option<&str> {
        self.spec.zone.as_deref()
    }

    /// The node's containerd socket (for `ctr --address`).
    pub fn containerd_socket(&self) -> PathBuf {
        NodeFiles::new(&self.dir).socket
    }

    /// Imports an image archive into the node's containerd (namespace `k8s.io`, where the
    /// kubelet looks), under the name recorded in the archive.
    pub fn import_image(&self, archive: &Path) -> Result<(), Error> {
        let ctr = binaries::ensure(Tool::Ctr)?;
        run(
            "ctr images import",
            Command::new(ctr)
                .arg("--address")
                .arg(self.containerd_socket())
                .args(["-n", "k8s.io", "images", "import", "--no-unpack=false"])
                .arg(archive),
        )
    }

    /// Loses the node: kubelet, containerd, the shims and every container are killed at once.
    pub fn stop(&mut self) {
        while let Some(mut process) = self.processes.pop() {
            process.kill();
        }
        // The shims name the node's containerd socket on their command line.
        kill_matching(&self.containerd_socket().to_string_lossy());
        kill_cgroup_tree(&self.cgroup);
    }

    /// Brings a stopped node back on its old state; the kubelet restarts its pods.
    pub async fn restart(&mut self) -> Result<(), Error> {
        self.stop();
        self.start_processes().await?;
        self.wait_ready(Duration::from_secs(120)).await
    }

    async fn start_processes(&mut self) -> Result<(), Error> {
        let files = NodeFiles::new(&self.dir);
        let containerd = binaries::ensure(Tool::Containerd)?;
        let shim_dir = binaries::ensure(Tool::ContainerdShim)?
            .parent()
            .map(Path::to_owned)
            .unwrap_or_default();
        let path = format!(
            "{}:{}",
            shim_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        // A socket left by a killed containerd would look ready before the new one listens.
        let _ = fs::remove_file(&files.socket);
        let mut command = Command::new(containerd);
        command.arg("--config").arg(&files.containerd_config);
        command.env("PATH", &path);
        self.processes.push(ManagedProcess::spawn(
            "containerd",
            command,
            &self.dir.join("containerd.log"),
            self.lifetime,
        )?);
        let deadline = Instant::now() + Duration::from_secs(30);
        while tokio::net::UnixStream::connect(&files.socket)
            .await
            .is_err()
        {
            self.check_running()?;
            if Instant::now() > deadline {
                return Err(self.timeout("containerd's socket"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        let mut command = Command::new(binaries::ensure(Tool::Kubelet)?);
        command
            .arg(format!("--config={}", files.kubelet_config.display()))
            .arg(format!("--kubeconfig={}", files.kubeconfig.display()))
            .arg(format!("--hostname-override={}", self.spec.name))
            .arg(format!("--node-ip={HOST_IP}"))
            .arg(format!("--root-dir={}", self.dir.join("kubelet").display()))
            .arg(format!("--cert-dir={}", self.dir.join("pki").display()))
            .env("PATH", &path);
        if let Some(zone) = &self.spec.zone {
            command.arg(format!("--node-labels={ZONE_LABEL}={zone}"));
        }
        self.processes.push(ManagedProcess::spawn(
            "kubelet",
            command,
            &self.dir.join("kubelet.log"),
            self.lifetime,
        )?);
        Ok(())
    }

    /// Waits until this kubelet answers its health check and the Node object reports Ready
    /// (after a restart the object may still show the old kubelet's Ready).
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<(), Error> {
        let nodes: Api<NodeObject> = Api::all(self.client.clone());
        let deadline = Instant::now() + timeout;
        loop {
            self.check_running()?;
            let healthy = crate::http_get(self.healthz_port, "/healthz")
                .await
                .is_ok_and(|body| body.trim_end().ends_with("ok"));
            if healthy
                && let Ok(Some(node)) = nodes.get_opt(&self.spec.name).await
                && is_ready(&node)
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(self.timeout("the Node to be Ready"));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn check_running(&mut self) -> Result<(), Error> {
        self.processes
            .iter_mut()
            .try_for_each(ManagedProcess::check_running)
    }

    fn timeout(&self, what: &str) -> Error {
        Error::Timeout {
            what: format!("node {}: {what}", self.spec.name),
            detail: self
                .processes
                .iter()
                .map(|p| format!("--- {} ---\n{}", p.name(), p.log_tail(20)))
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }

    /// Leaves the node running after this value is dropped.
    pub fn detach(mut self) -> Vec<(String, u32)> {
        std::mem::take(&mut self.processes)
            .into_iter()
            .filter_map(|p| {
                let name = format!("{}/{}", self.spec.name, p.name());
                p.detach().map(|pid| (name, pid))
            })
            .collect()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if self.processes.is_empty() && self.lifetime == Lifetime::Detached {
            return;
        }
        while let Some(mut process) = self.processes.pop() {
            process.kill();
        }
        clean_up(&self.dir);
    }
}

/// What [`clean_up`] needs to know of a node, kept in its directory (`node.json`) so that a
/// detached node (`cargo xtask controlplane down`) is cleaned up like an owned one.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Leftovers {
    cgroup: String,
    bridge: String,
}

/// Stops what is left of the node in `dir` (containerd, shims, containers, kubelet), unmounts
/// everything under it, removes its cgroups and its bridge. Best effort and idempotent.
pub fn clean_up(dir: &Path) {
    let Some(leftovers) = fs::read(dir.join("node.json"))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Leftovers>(&bytes).ok())
    else {
        return;
    };
    // With the trailing slash: node `a` must not match node `ab`'s paths.
    kill_matching(&format!("{}/", dir.display()));
    kill_cgroup_tree(&leftovers.cgroup);
    unmount_under(dir);
    remove_cgroup_tree(&leftovers.cgroup);
    let _ = Command::new("ip")
        .args(["link", "del", &leftovers.bridge])
        .output();
}

/// Whether a Node object's Ready condition is True.
pub fn is_ready(node: &NodeObject) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The files of one node under its directory.
struct NodeFiles {
    dir: PathBuf,
    socket: PathBuf,
    containerd_config: PathBuf,
    kubelet_config: PathBuf,
    kubeconfig: PathBuf,
}

impl NodeFiles {
    fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
            socket: dir.join("containerd.sock"),
            containerd_config: dir.join("containerd.toml"),
            kubelet_config: dir.join("kubelet.json"),
            kubeconfig: dir.join("kubeconfig"),
        }
    }

    fn write(
        &self,
        plane: &ControlPlane,
        spec: &NodeSpec,
        subnet: &str,
        bridge: &str,
        cgroup: &str,
    ) -> Result<u16, Error> {
        let dir = &self.dir;
        let pki = dir.join("pki");
        let cni = dir.join("cni");
        for d in [dir, &pki, &cni] {
            fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
        }
        let ca = plane.ca();
        let ca_file = pki.join("ca.crt");
        write(&ca_file, &ca.cert_pem())?;
        let identity =
            plane.user_kubeconfig(&format!("system:node:{}", spec.name), &["system:nodes"])?;
        write(&self.kubeconfig, &crate::serialize_kubeconfig(&identity)?)?;
        let serving = ca.serving_cert_for(&[&spec.name], &[IpAddr::V4(HOST_IP)])?;
        write(&pki.join("kubelet.crt"), &serving.cert_pem)?;
        write(&pki.join("kubelet.key"), &serving.key_pem)?;

        let cni_config = cni_config(bridge, subnet, &dir.join("cni-ipam"));
        write(&cni.join("10-fleetrs.conflist"), &cni_config.to_string())?;
        write(
            &self.containerd_config,
            &containerd_config(dir, &self.socket),
        )?;

        let [port, healthz] = ports::free_ports()?;
        let kubelet = KubeletConfig {
            port,
            healthz,
            pki: &pki,
            cgroup,
            socket: &self.socket,
            dir,
        };
        write(&self.kubelet_config, &kubelet.json().to_string())?;
        create_cgroup_root(cgroup)?;
        write(
            &dir.join("node.json"),
            &json!({"cgroup": cgroup, "bridge": bridge}).to_string(),
        )?;
        Ok(healthz)
    }
}

/// The node's CNI network: a bridge with host-local addresses from `subnet`, and port maps.
fn cni_config(bridge: &str, subnet: &str, ipam: &Path) -> serde_json::Value {
    json!({
        "cniVersion": "1.0.0",
        "name": format!("fleetrs-{bridge}"),
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": true,
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": subnet}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": ipam,
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": true}},
        ],
    })
}

/// What the kubelet's configuration file says.
struct KubeletConfig<'a> {
    port: u16,
    healthz: u16,
    /// Holds `ca.crt`, `kubelet.crt` and `kubelet.key`.
    pki: &'a Path,
    cgroup: &'a str,
    socket: &'a Path,
    dir: &'a Path,
}

impl KubeletConfig<'_> {
    fn json(&self) -> serde_json::Value {
        json!({
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": HOST_IP.to_string(),
            "port": self.port,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": self.healthz,
            "tlsCertFile": self.pki.join("kubelet.crt"),
            "tlsPrivateKeyFile": self.pki.join("kubelet.key"),
            "authentication": {
                "anonymous": {"enabled": false},
                "webhook": {"enabled": true},
                "x509": {"clientCAFile": self.pki.join("ca.crt")},
            },
            "authorization": {"mode": "Webhook"},
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": format!("/{}", self.cgroup),
            "failCgroupV1": false,
            "failSwapOn": false,
            "oomScoreAdj": 0,
            "containerRuntimeEndpoint": format!("unix://{}", self.socket.display()),
            "imageServiceEndpoint": format!("unix://{}", self.socket.display()),
            "clusterDomain": "cluster.local",
            "resolvConf": "/etc/resolv.conf",
            "serializeImagePulls": false,
            // Images are imported, never pulled: garbage-collecting one would strand pods.
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
            "maxPods": 60,
            "podLogsDir": self.dir.join("pod-logs"),
            "volumePluginDir": self.dir.join("volume-plugins"),
            "nodeStatusUpdateFrequency": "5s",
        })
    }
}

fn containerd_config(dir: &Path, socket: &Path) -> String {
    let d = dir.display();
    format!(
        r#"version = 3
root = "{d}/containerd/root"
state = "{d}/containerd/state"
disabled_plugins = ["io.containerd.nri.v1.nri", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{socket}"

[ttrpc]
  address = "{socket}.ttrpc"

[plugins.'io.containerd.internal.v1.opt']
  path = "{d}/containerd/opt"

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "{PAUSE_IMAGE}"

[plugins.'io.containerd.cri.v1.runtime']
  # No CAP_SYS_RESOURCE for root here (NODES.md, trap 1).
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_cdi = false
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
    BinaryName = "{RUNC}"
    Root = "{d}/containerd/runc"
    SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["{CNI_BIN_DIR}"]
    conf_dir = "{d}/cni"

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
"#,
        socket = socket.display(),
    )
}

fn write(path: &Path, content: &str) -> Result<(), Error> {
    fs::write(path, content).map_err(|e| Error::io(path, e))
}

/// The pause image archive, built once per machine from the `pause.c` of the pinned
/// Kubernetes module with the system's `gcc -static` (no registry needed).
pub fn pause_image() -> Result<PathBuf, Error> {
    let version = binaries::ToolModule::Kubernetes.version()?;
    let dir = binaries::cache_dir()
        .join("bin")
        .join(format!("pause-{version}"));
    let archive = dir.join("pause.tar");
    if archive.is_file() {
        return Ok(archive);
    }
    fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let source = binaries::kubernetes_source_file(&version, "build/pause/linux/pause.c")?;
    let binary = dir.join("pause");
    let tag = PAUSE_IMAGE.rsplit_once(':').map_or("", |(_, t)| t);
    run(
        "gcc (pause)",
        Command::new("gcc")
            .args(["-Os", "-Wall", "-static"])
            .arg(format!("-DVERSION=v{tag}-fleet-rs"))
            .arg("-o")
            .arg(&binary)
            .arg(&source),
    )?;
    let staged = dir.join(format!(".pause-{}.tar", std::process::id()));
    crate::image::ImageBuilder::new(PAUSE_IMAGE)
        .file("/pause", &binary, 0o755)
        .entrypoint(&["/pause"])
        .user("65535:65535")
        .write(&staged)?;
    fs::rename(&staged, &archive).map_err(|e| Error::io(&archive, e))?;
    Ok(archive)
}
