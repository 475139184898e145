//! System packages the tests need beyond the pinned Go-built binaries: `sshd` (Debian's
//! `openssh-server`) for git over ssh; runc, the CNI plugins and iptables for the nodes of
//! `--provider node`. Installed with apt when missing (as root, or through sudo); elsewhere the
//! error says what to install.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};
use fleet_testkit::binaries::which;

/// Makes sure `sshd` is there; prints where it is.
pub fn ensure_sshd() -> anyhow::Result<()> {
    if let Ok(path) = fleet_testkit::ssh::sshd_binary() {
        eprintln!("{:<24} {}", "sshd", path.display());
        return Ok(());
    }
    install(&["openssh-server"], "an OpenSSH server (or set FLEET_SSHD)")?;
    let path = fleet_testkit::ssh::sshd_binary().context("sshd after installing openssh-server")?;
    eprintln!("{:<24} {}", "sshd", path.display());
    Ok(())
}

/// What a node runs besides the pinned binaries, as Debian packages: runc (NODES.md: 1.1.5
/// works), the CNI plugins (bridge, host-local, loopback, portmap) and iptables (the
/// `kubernetes` Service route).
const NODE_PACKAGES: [(&str, &str); 3] = [
    ("/usr/sbin/runc", "runc"),
    ("/usr/lib/cni/bridge", "containernetworking-plugins"),
    ("/usr/sbin/iptables", "iptables"),
];

/// Makes sure the node packages are there (nodes run as root: kubelets and containerd manage
/// cgroups, mounts and iptables).
pub fn ensure_node_packages() -> anyhow::Result<()> {
    if !is_root() {
        bail!("nodes (kubelet, containerd) need root: run as root");
    }
    let missing: Vec<&str> = NODE_PACKAGES
        .iter()
        .filter(|(path, _)| !Path::new(path).exists())
        .map(|(_, package)| *package)
        .collect();
    if !missing.is_empty() {
        install(&missing, "runc, the CNI plugins and iptables")?;
    }
    for (path, package) in NODE_PACKAGES {
        if !Path::new(path).exists() {
            bail!("{path} is still missing after installing {package}");
        }
        eprintln!("{package:<24} {path}");
    }
    Ok(())
}

fn install(packages: &[&str], what: &str) -> anyhow::Result<()> {
    if which("apt-get").is_none() {
        bail!(
            "{} missing and there is no apt-get: install {what}",
            packages.join(", ")
        );
    }
    eprintln!("installing {} with apt-get", packages.join(", "));
    let mut args = vec!["install", "-y", "--no-install-recommends"];
    args.extend_from_slice(packages);
    if apt(&args).is_err() {
        // A fresh machine may have no package lists yet.
        apt(&["update"])?;
        apt(&args)?;
    }
    Ok(())
}

/// Whether this process runs as root (what nodes need).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn apt(args: &[&str]) -> anyhow::Result<()> {
    let mut cmd = if is_root() {
        Command::new("apt-get")
    } else if which("sudo").is_some() {
        let mut sudo = Command::new("sudo");
        sudo.args(["-n", "apt-get"]);
        sudo
    } else {
        bail!("installing system packages needs root or sudo");
    };
    let status = cmd
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("running apt-get")?;
    if !status.success() {
        bail!("apt-get {} failed ({status})", args.join(" "));
    }
    Ok(())
}
