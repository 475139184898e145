//! `cargo xtask controlplane up|down|list`: detached local control planes whose state lives
//! under the cache directory (`<cache>/planes/<name>`), reused while still running.

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use fleet_testkit::network::ClusterNetwork;
use fleet_testkit::node::{Node, NodeSpec};
use fleet_testkit::process::{pid_alive, terminate_pid};
use fleet_testkit::{ControlPlane, Lifetime, binaries};
use serde::{Deserialize, Serialize};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Start a control plane in the background (or reuse a running one) and print
    /// `export KUBECONFIG=...` on the last line.
    Up {
        #[arg(long, default_value = "fleet-rs")]
        name: String,
        /// Do not run kube-controller-manager.
        #[arg(long)]
        no_controller_manager: bool,
        /// Join this many nodes (kubelet + containerd each; zones a, b, c, ... in turn) so that
        /// pods run; needs root.
        #[arg(long, default_value_t = 0)]
        nodes: u8,
    },
    /// Stop a control plane and remove its state.
    Down {
        #[arg(long, default_value = "fleet-rs")]
        name: String,
    },
    /// List the control planes and whether they run.
    List,
}

/// What `up` leaves behind for `down` and `list`.
#[derive(Debug, Serialize, Deserialize)]
struct PlaneState {
    name: String,
    server: String,
    kubeconfig: PathBuf,
    processes: Vec<(String, u32)>,
    /// The network slot of a plane with nodes (its `kubernetes` Service route).
    #[serde(default)]
    network_slot: Option<u8>,
}

impl PlaneState {
    fn load(name: &str) -> Option<Self> {
        let text = fs::read_to_string(state_dir(name).join("state.json")).ok()?;
        serde_json::from_str(&text).ok()
    }

    fn running(&self) -> bool {
        !self.processes.is_empty() && self.processes.iter().all(|(_, pid)| pid_alive(*pid))
    }
}

fn planes_dir() -> PathBuf {
    binaries::cache_dir().join("planes")
}

fn state_dir(name: &str) -> PathBuf {
    planes_dir().join(name)
}

pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Up {
            name,
            no_controller_manager,
            nodes,
        } => up(&name, !no_controller_manager, nodes),
        Command::Down { name } => down(&name),
        Command::List => list(),
    }
}

fn validate_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !ok {
        bail!(
            "control-plane name {name:?} must be non-empty and use only letters, digits, - and _"
        );
    }
    Ok(())
}

fn up(name: &str, controller_manager: bool, nodes: u8) -> anyhow::Result<()> {
    validate_name(name)?;
    if let Some(state) = PlaneState::load(name) {
        if state.running() {
            eprintln!(
                "control plane {name} is already running at {}",
                state.server
            );
            println!("export KUBECONFIG={}", state.kubeconfig.display());
            return Ok(());
        }
        stop_processes(&state);
    }
    let dir = state_dir(name);
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("removing stale {}", dir.display()))?;
    }
    let runtime = tokio::runtime::Runtime::new()?;
    let mut builder = ControlPlane::builder()
        .name(name)
        .state_dir(&dir)
        .controller_manager(controller_manager)
        .lifetime(Lifetime::Detached);
    if nodes > 0 {
        crate::packages::ensure_node_packages()?;
        builder = builder.with_nodes();
    }
    let (plane, mut node_processes) = runtime.block_on(async {
        let plane = builder.start().await?;
        let mut processes = Vec::new();
        for index in 0..nodes {
            let zone = char::from(b'a' + index % 26).to_string();
            let spec = NodeSpec {
                name: format!("{name}-{zone}{}", index / 26),
                zone: Some(zone),
                index,
            };
            let node = Node::start_with(&plane, spec, Lifetime::Detached).await?;
            eprintln!(
                "node {} (zone {}) Ready",
                node.name(),
                node.zone().unwrap_or("-")
            );
            processes.extend(node.detach());
        }
        anyhow::Ok((plane, processes))
    })?;
    let startup = plane.startup_time();
    let network_slot = plane.network().map(ClusterNetwork::slot);
    let server = plane.server().to_owned();
    let kubeconfig = plane.kubeconfig_path().to_owned();
    let mut processes = plane.detach();
    processes.append(&mut node_processes);
    let state = PlaneState {
        name: name.to_owned(),
        server,
        kubeconfig,
        processes,
        network_slot,
    };
    fs::write(
        dir.join("state.json"),
        serde_json::to_string_pretty(&state)?,
    )?;
    eprintln!(
        "control plane {name} ready at {} in {startup:.1?} (logs and state in {})",
        state.server,
        dir.display()
    );
    println!("export KUBECONFIG={}", state.kubeconfig.display());
    Ok(())
}

fn down(name: &str) -> anyhow::Result<()> {
    validate_name(name)?;
    let dir = state_dir(name);
    match PlaneState::load(name) {
        Some(state) => stop_processes(&state),
        None if dir.exists() => eprintln!("no state.json in {}; removing it", dir.display()),
        None => bail!("no control plane named {name} (see `cargo xtask controlplane list`)"),
    }
    fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    eprintln!("control plane {name} stopped and removed");
    Ok(())
}

/// Stops the processes one at a time in reverse start order (nodes, controller manager, API
/// server, etcd): the API server shuts down cleanly in about a second while etcd still
/// answers. Then what nodes leave behind (shims, containers, mounts, cgroups, bridges) and the
/// plane's Service route go.
fn stop_processes(state: &PlaneState) {
    for (process, pid) in state.processes.iter().rev() {
        if pid_alive(*pid) && !terminate_pid(*pid, Duration::from_secs(10)) {
            eprintln!("{process} (pid {pid}) did not stop within 10s of SIGTERM; killed it");
        }
    }
    if let Ok(nodes) = fs::read_dir(state_dir(&state.name).join("nodes")) {
        for node in nodes.flatten() {
            fleet_testkit::node::clean_up(&node.path());
        }
    }
    if let Some(slot) = state.network_slot {
        fleet_testkit::network::remove_slot(slot);
    }
}

fn list() -> anyhow::Result<()> {
    let Ok(entries) = fs::read_dir(planes_dir()) else {
        eprintln!("no control planes");
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        match PlaneState::load(&name) {
            Some(state) => println!(
                "{name:<16} {:<8} {:<28} {}",
                if state.running() {
                    "running"
                } else {
                    "stopped"
                },
                state.server,
                state.kubeconfig.display()
            ),
            None => println!("{name:<16} unknown (no state.json)"),
        }
    }
    Ok(())
}
