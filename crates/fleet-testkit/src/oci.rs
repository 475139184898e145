//! A real OCI registry for tests (CNCF distribution's `registry`, pinned in
//! `e2e/tools/registry`): Helm charts pushed with `helm push`, pulled by the agent's helm.
//! Plain HTTP on a free loopback port, storage in a temporary directory, relative URLs (so
//! that it works behind a [`TlsProxy`](crate::tls::TlsProxy)); stopped on drop.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::binaries::{Tool, ensure};
use crate::{Error, Lifetime, ManagedProcess, ports};

/// A running registry.
#[derive(Debug)]
pub struct OciRegistry {
    process: ManagedProcess,
    address: SocketAddr,
    _dir: tempfile::TempDir,
}

impl OciRegistry {
    /// Starts the registry and waits until it answers `/v2/`.
    pub async fn start() -> Result<Self, Error> {
        let binary = ensure(Tool::OciRegistry)?;
        let dir = tempfile::Builder::new()
            .prefix("fleet-oci-")
            .tempdir()
            .map_err(|e| Error::io(Path::new("tempdir"), e))?;
        let port = ports::free_port()?;
        let config = dir.path().join("config.yml");
        let text = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n  relativeurls: true\n",
            dir.path().join("storage").display()
        );
        std::fs::write(&config, text).map_err(|e| Error::io(&config, e))?;
        let mut cmd = Command::new(binary);
        cmd.arg("serve").arg(&config);
        let mut process = ManagedProcess::spawn(
            "registry",
            cmd,
            &dir.path().join("registry.log"),
            Lifetime::Owned,
        )?;
        process
            .wait_serving(
                "the OCI registry to answer /v2/",
                Duration::from_secs(20),
                || async move {
                    crate::http_get(port, "/v2/")
                        .await
                        .map(drop)
                        .map_err(|e| e.to_string())
                },
            )
            .await?;
        Ok(Self {
            process,
            address: SocketAddr::from(([127, 0, 0, 1], port)),
            _dir: dir,
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }
}
