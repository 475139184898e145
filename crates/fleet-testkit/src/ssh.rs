//! A real OpenSSH server for git over ssh in tests: `sshd` in the foreground on a free loopback
//! port, with a fresh ed25519 host key and one authorized client key, logging in as the user
//! running the test. Git's own `git-upload-pack` serves repositories by absolute path
//! (`ssh://user@127.0.0.1:port/abs/path`). `sshd` comes from Debian's `openssh-server`
//! (`cargo xtask test` installs it when it is missing).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::{Error, Lifetime, ManagedProcess, ports};

/// Where `sshd` is looked for, in order (besides `FLEET_SSHD`).
const SSHD_PATHS: [&str; 2] = ["/usr/sbin/sshd", "/usr/local/sbin/sshd"];

/// The `sshd` binary, if this machine has one.
pub fn sshd_binary() -> Result<PathBuf, Error> {
    if let Some(path) = std::env::var_os("FLEET_SSHD") {
        return Ok(PathBuf::from(path));
    }
    SSHD_PATHS
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or_else(|| Error::BinaryMissing {
            binary: "sshd",
            message: "install openssh-server (`cargo xtask test` does: apt-get install \
                      openssh-server) or set FLEET_SSHD"
                .to_owned(),
        })
}

/// A running `sshd`; stopped on drop.
#[derive(Debug)]
pub struct SshServer {
    process: ManagedProcess,
    port: u16,
    user: String,
    private_key: String,
    host_key: String,
    _dir: tempfile::TempDir,
}

impl SshServer {
    /// Starts `sshd` and waits until it accepts connections.
    pub async fn start() -> Result<Self, Error> {
        let sshd = sshd_binary()?;
        let dir = tempfile::Builder::new()
            .prefix("fleet-sshd-")
            .tempdir()
            .map_err(|e| Error::io(Path::new("tempdir"), e))?;
        let path = |name: &str| dir.path().join(name);
        keygen(&path("host_key"))?;
        keygen(&path("client_key"))?;
        let read = |p: PathBuf| std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e));
        let client_public = read(path("client_key.pub"))?;
        std::fs::write(path("authorized_keys"), &client_public)
            .map_err(|e| Error::io(&path("authorized_keys"), e))?;
        let port = ports::free_port()?;
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {host}\nPidFile {pid}\n\
             AuthorizedKeysFile {keys}\nStrictModes no\nPubkeyAuthentication yes\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
             PermitRootLogin prohibit-password\nLogLevel VERBOSE\n",
            host = path("host_key").display(),
            pid = path("sshd.pid").display(),
            keys = path("authorized_keys").display(),
        );
        std::fs::write(path("sshd_config"), config)
            .map_err(|e| Error::io(&path("sshd_config"), e))?;
        if is_root() {
            // sshd's privilege separation directory, which a package install does not create
            // outside systemd.
            std::fs::create_dir_all("/run/sshd")
                .map_err(|e| Error::io(Path::new("/run/sshd"), e))?;
        }
        let mut cmd = Command::new(&sshd);
        cmd.arg("-D").arg("-e").arg("-f").arg(path("sshd_config"));
        let mut process = ManagedProcess::spawn("sshd", cmd, &path("sshd.log"), Lifetime::Owned)?;
        process
            .wait_serving(
                "sshd to accept connections",
                Duration::from_secs(20),
                || async move {
                    tokio::net::TcpStream::connect(("127.0.0.1", port))
                        .await
                        .map(drop)
                        .map_err(|e| e.to_string())
                },
            )
            .await?;
        let host_public = read(path("host_key.pub"))?;
        let mut fields = host_public.split_whitespace();
        let host_key = format!(
            "{} {}",
            fields.next().unwrap_or_default(),
            fields.next().unwrap_or_default()
        );
        Ok(Self {
            process,
            port,
            user: current_user(),
            private_key: read(path("client_key"))?,
            host_key,
            _dir: dir,
        })
    }

    /// The `ssh://` URL of a repository at `path` on this machine.
    pub fn url_of(&self, path: &Path) -> String {
        format!(
            "ssh://{}@127.0.0.1:{}{}",
            self.user,
            self.port,
            path.display()
        )
    }

    /// The authorized client's private key (OpenSSH format).
    pub fn private_key(&self) -> &str {
        &self.private_key
    }

    /// A `known_hosts` line for this server.
    pub fn known_hosts(&self) -> String {
        format!("[127.0.0.1]:{} {}\n", self.port, self.host_key)
    }

    /// The server's log (connections, authentications).
    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }
}

/// An ed25519 key pair without a passphrase at `path` and `path.pub`.
fn keygen(path: &Path) -> Result<(), Error> {
    crate::process::run(
        "ssh-keygen",
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "fleet-rs-test", "-f"])
            .arg(path),
    )
}

#[allow(unsafe_code)]
fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The user sshd logs the client in as: the one running the test.
fn current_user() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(|| {
            let output = Command::new("id").arg("-un").output().ok()?;
            Some(String::from_utf8_lossy(&output.stdout).trim().to_owned())
        })
        .unwrap_or_else(|| "root".to_owned())
}
