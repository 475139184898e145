//! The host network that local control planes with nodes share.
//!
//! Choice: every node of every plane lives in the host's network namespace; each node's pods get
//! their own bridge and /24 (CNI `bridge` + `host-local`), so pods reach each other across nodes
//! through the host's routes, and reach the API servers through one address,
//! [`HOST_IP`] on [`HOST_INTERFACE`], on which every node-bearing plane serves. Per-node
//! network namespaces would isolate nodes further, but several clusters' kube-proxies in one
//! namespace would still fight over the same iptables chains; instead each plane gets a distinct
//! Service range (a "slot") and one DNAT rule that routes its `kubernetes` Service IP to its API
//! server, which is the only Service fleet-rs's pods need (in-cluster config). Nothing here
//! leaves the machine: the addresses are on the loopback device and on bridges this module's
//! callers create.

use std::fs;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;

use crate::Error;
use crate::binaries::cache_dir;
use crate::process::run;

/// The interface that carries the address the API servers of node-bearing planes listen on:
/// the loopback device, because this machine kind's kernel has no `dummy` link type; the
/// kernel delivers packets for any of its local addresses whatever interface they came in on.
pub const HOST_INTERFACE: &str = "lo";
/// Its address: what pods (and the kubeconfigs of such planes) use to reach an API server.
pub const HOST_IP: Ipv4Addr = Ipv4Addr::new(10, 255, 0, 1);
/// How many planes with nodes can run on one machine at once.
const SLOTS: u8 = 64;

/// Puts [`HOST_IP`] on [`HOST_INTERFACE`] (idempotent) and turns on IPv4 forwarding between
/// the bridges.
pub fn ensure_host_interface() -> Result<(), Error> {
    let addresses = Command::new("ip")
        .args(["-4", "addr", "show", "dev", HOST_INTERFACE])
        .output()
        .map_err(|e| Error::io(&PathBuf::from("ip"), e))?;
    if !String::from_utf8_lossy(&addresses.stdout).contains(&format!("{HOST_IP}/")) {
        run(
            "ip addr add",
            Command::new("ip").args([
                "addr",
                "add",
                &format!("{HOST_IP}/32"),
                "dev",
                HOST_INTERFACE,
            ]),
        )?;
    }
    let forward = PathBuf::from("/proc/sys/net/ipv4/ip_forward");
    fs::write(&forward, "1").map_err(|e| Error::io(&forward, e))
}

/// One plane's share of the host network: its Service range, its nodes' pod subnets and
/// bridges, and the DNAT rule of its `kubernetes` Service. Held for the plane's life (a file
/// lock keeps two planes of this machine off one slot); dropping it removes the rule.
#[derive(Debug)]
pub struct ClusterNetwork {
    slot: u8,
    lock: Option<fs::File>,
    routed: bool,
}

impl ClusterNetwork {
    /// Claims the first slot no other plane of this machine holds.
    pub fn claim() -> Result<Self, Error> {
        ensure_host_interface()?;
        let dir = cache_dir().join("network");
        fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        for slot in 0..SLOTS {
            let path = dir.join(format!("slot-{slot}.lock"));
            let file = fs::File::create(&path).map_err(|e| Error::io(&path, e))?;
            // A detached plane (`cargo xtask controlplane up`) holds no lock but keeps its
            // chain: a slot is free only when neither is there.
            if file.try_lock().is_ok() && !chain_exists(&chain_name(slot)) {
                return Ok(Self {
                    slot,
                    lock: Some(file),
                    routed: false,
                });
            }
        }
        Err(Error::Config {
            message: format!("all {SLOTS} network slots for planes with nodes are taken"),
        })
    }

    /// The slot number (0..64).
    pub fn slot(&self) -> u8 {
        self.slot
    }

    /// The plane's Service range (`--service-cluster-ip-range`).
    pub fn service_cidr(&self) -> String {
        format!("10.96.{}.0/24", self.slot)
    }

    /// The ClusterIP of the `kubernetes` Service (the first address of the range).
    pub fn kubernetes_service_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 96, self.slot, 1)
    }

    /// Node `index`'s pod subnet.
    pub fn pod_subnet(&self, index: u8) -> String {
        format!("10.{}.{index}.0/24", 128 + u16::from(self.slot))
    }

    /// Node `index`'s CNI bridge (at most 15 characters, as Linux requires).
    pub fn bridge(&self, index: u8) -> String {
        format!("frs{}n{index}", self.slot)
    }

    /// Routes the `kubernetes` Service IP (port 443) to the API server on [`HOST_IP`]`:port`,
    /// from pods (PREROUTING) and from host-network processes (OUTPUT).
    pub fn route_kubernetes_service(&mut self, api_port: u16) -> Result<(), Error> {
        let chain = chain_name(self.slot);
        iptables(&["-N", &chain])?;
        iptables(&[
            "-A",
            &chain,
            "-d",
            &format!("{}/32", self.kubernetes_service_ip()),
            "-p",
            "tcp",
            "--dport",
            "443",
            "-j",
            "DNAT",
            "--to-destination",
            &format!("{HOST_IP}:{api_port}"),
        ])?;
        for hook in ["PREROUTING", "OUTPUT"] {
            iptables(&["-I", hook, "-j", &chain])?;
        }
        self.routed = true;
        Ok(())
    }

    /// Leaves the rule in place for a plane that outlives this process; `remove_slot` (e.g.
    /// `cargo xtask controlplane down`) takes it away.
    pub fn detach(mut self) {
        self.routed = false;
        self.lock = None;
    }
}

impl Drop for ClusterNetwork {
    fn drop(&mut self) {
        if self.routed {
            remove_slot(self.slot);
        }
    }
}

/// Removes a slot's DNAT chain and the jumps to it (best effort).
pub fn remove_slot(slot: u8) {
    let chain = chain_name(slot);
    for hook in ["PREROUTING", "OUTPUT"] {
        while iptables(&["-D", hook, "-j", &chain]).is_ok() {}
    }
    let _ = iptables(&["-F", &chain]);
    let _ = iptables(&["-X", &chain]);
}

fn chain_name(slot: u8) -> String {
    format!("FLEETRS-S{slot}")
}

fn chain_exists(chain: &str) -> bool {
    Command::new("iptables")
        .args(["-w", "-t", "nat", "-S", chain])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn iptables(args: &[&str]) -> Result<(), Error> {
    run(
        "iptables",
        Command::new("iptables")
            .args(["-w", "-t", "nat"])
            .args(args),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_give_disjoint_ranges_and_short_bridge_names() {
        let network = |slot| ClusterNetwork {
            slot,
            lock: None,
            routed: false,
        };
        let (a, b) = (network(0), network(63));
        assert_eq!(a.service_cidr(), "10.96.0.0/24");
        assert_eq!(b.kubernetes_service_ip(), Ipv4Addr::new(10, 96, 63, 1));
        assert_eq!(a.pod_subnet(2), "10.128.2.0/24");
        assert_eq!(b.pod_subnet(2), "10.191.2.0/24");
        assert!(b.bridge(255).len() <= 15);
    }
}
