//! System packages the tests need beyond the pinned Go-built binaries: `sshd` (Debian's
//! `openssh-server`) for git over ssh. Installed with apt when missing (as root, or through
//! sudo); elsewhere the error says what to install.

use std::process::Command;

use anyhow::{Context, bail};

/// Makes sure `sshd` is there; prints where it is.
pub fn ensure_sshd() -> anyhow::Result<()> {
    if let Ok(path) = fleet_testkit::ssh::sshd_binary() {
        eprintln!("{:<24} {}", "sshd", path.display());
        return Ok(());
    }
    if which("apt-get").is_none() {
        bail!(
            "sshd is missing and there is no apt-get: install an OpenSSH server (or set FLEET_SSHD)"
        );
    }
    eprintln!("sshd is missing: installing openssh-server with apt-get");
    if apt(&["install", "-y", "--no-install-recommends", "openssh-server"]).is_err() {
        // A fresh machine may have no package lists yet.
        apt(&["update"])?;
        apt(&["install", "-y", "--no-install-recommends", "openssh-server"])?;
    }
    let path = fleet_testkit::ssh::sshd_binary().context("sshd after installing openssh-server")?;
    eprintln!("{:<24} {}", "sshd", path.display());
    Ok(())
}

fn apt(args: &[&str]) -> anyhow::Result<()> {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let mut cmd = if root {
        Command::new("apt-get")
    } else if which("sudo").is_some() {
        let mut sudo = Command::new("sudo");
        sudo.args(["-n", "apt-get"]);
        sudo
    } else {
        bail!("installing openssh-server needs root or sudo");
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

fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
    })
}
