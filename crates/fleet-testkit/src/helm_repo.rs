//! A Helm chart repository for tests: charts written by the test, packaged with the pinned
//! `helm package` and indexed with `helm repo index`, in a directory a
//! [`FileServer`](crate::file_server::FileServer) serves.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Error;
use crate::binaries::{Tool, ensure};

/// A repository directory and the directory its charts are written in.
#[derive(Debug)]
pub struct HelmRepoDir {
    dir: tempfile::TempDir,
}

impl HelmRepoDir {
    pub fn new() -> Result<Self, Error> {
        let dir = tempfile::Builder::new()
            .prefix("fleet-helm-repo-")
            .tempdir()
            .map_err(|e| Error::io(Path::new("tempdir"), e))?;
        std::fs::create_dir_all(dir.path().join("repo"))
            .map_err(|e| Error::io(&dir.path().join("repo"), e))?;
        Ok(Self { dir })
    }

    /// What to serve: `index.yaml` and the chart archives.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    /// Packages chart `name` at `version` with `templates` (file name → content) and
    /// re-indexes the repository for `url` (where it is served).
    pub fn publish(
        &self,
        name: &str,
        version: &str,
        templates: &[(&str, &str)],
        url: &str,
    ) -> Result<(), Error> {
        let src = self.dir.path().join(format!("src/{name}-{version}"));
        let write = |path: PathBuf, content: &str| {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
            }
            std::fs::write(&path, content).map_err(|e| Error::io(&path, e))
        };
        write(
            src.join("Chart.yaml"),
            &format!("apiVersion: v2\nname: {name}\nversion: {version}\n"),
        )?;
        for (file, content) in templates {
            write(src.join("templates").join(file), content)?;
        }
        let root = self.root();
        self.helm(&[
            "package".as_ref(),
            src.as_os_str(),
            "--destination".as_ref(),
            root.as_os_str(),
        ])?;
        self.helm(&[
            "repo".as_ref(),
            "index".as_ref(),
            root.as_os_str(),
            "--url".as_ref(),
            url.as_ref(),
        ])
    }

    /// Pushes the packaged chart `name` at `version` (see [`publish`](Self::publish)) to an
    /// OCI registry: `oci://<registry>/<path>` (HTTPS, trusting `ca_file`).
    pub fn push_oci(
        &self,
        name: &str,
        version: &str,
        reference: &str,
        ca_file: &Path,
    ) -> Result<(), Error> {
        let archive = self.root().join(format!("{name}-{version}.tgz"));
        self.helm(&[
            "push".as_ref(),
            archive.as_os_str(),
            reference.as_ref(),
            "--ca-file".as_ref(),
            ca_file.as_os_str(),
        ])
    }

    fn helm(&self, args: &[&std::ffi::OsStr]) -> Result<(), Error> {
        let home = self.dir.path().join("helm-home");
        crate::process::run(
            "helm",
            Command::new(ensure(Tool::Helm)?)
                .args(args)
                .env("HELM_CACHE_HOME", home.join("cache"))
                .env("HELM_CONFIG_HOME", home.join("config"))
                .env("HELM_DATA_HOME", home.join("data")),
        )
    }
}
