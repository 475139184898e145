//! OCI image archives written from files, without Docker or a registry.
//!
//! One archive holds both layouts that image tools read: an OCI image layout (`oci-layout`,
//! `index.json`, `blobs/sha256/...`) and Docker's `manifest.json` next to it, as `docker save`
//! writes since Docker 25. So `ctr images import` (and with it `kind load image-archive`) and
//! `docker load` all take it, under the fully qualified name given (CRI normalises short names
//! to `docker.io/...`, NODES.md trap 3). One gzipped layer, entries sorted, owned by root and
//! dated at the epoch: the same inputs give the same digest.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::json;
use sha2::{Digest as _, Sha256};

use crate::Error;

/// What a path in the image is.
#[derive(Debug, Clone)]
enum Entry {
    File { source: Source, mode: u32 },
    Dir { mode: u32 },
    Symlink { target: String },
}

#[derive(Debug, Clone)]
enum Source {
    Path(PathBuf),
    Bytes(Vec<u8>),
}

/// An image being put together: its files and its runtime config.
#[derive(Debug, Clone)]
pub struct ImageBuilder {
    name: String,
    entries: BTreeMap<String, Entry>,
    entrypoint: Vec<String>,
    user: String,
    env: Vec<String>,
}

/// A written archive.
#[derive(Debug, Clone)]
pub struct ImageArchive {
    pub path: PathBuf,
    /// The fully qualified reference it is imported as.
    pub name: String,
    /// `sha256:...` of the image manifest (what `ctr images ls` shows).
    pub manifest_digest: String,
    /// Bytes of the compressed layer (what a pull transfers).
    pub compressed_size: u64,
    /// Bytes of the unpacked files.
    pub unpacked_size: u64,
    /// Every file and symlink in the layer (directories left out), sorted; compared with the
    /// Dockerfile's image.
    pub files: Vec<String>,
}

impl ImageBuilder {
    /// An empty image named `name` (fully qualified, e.g. `ghcr.io/fleet-rs/fleet-rs:0.1.0`).
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            entries: BTreeMap::new(),
            entrypoint: Vec::new(),
            user: String::new(),
            env: vec!["PATH=/usr/local/bin:/usr/bin:/bin".to_owned()],
        }
    }

    /// Copies a file of this machine to `path` in the image.
    pub fn file(&mut self, path: &str, source: &Path, mode: u32) -> &mut Self {
        self.insert(
            path,
            Entry::File {
                source: Source::Path(source.to_owned()),
                mode,
            },
        )
    }

    /// Writes `bytes` to `path` in the image.
    pub fn bytes(&mut self, path: &str, bytes: impl Into<Vec<u8>>, mode: u32) -> &mut Self {
        self.insert(
            path,
            Entry::File {
                source: Source::Bytes(bytes.into()),
                mode,
            },
        )
    }

    /// An (empty) directory, e.g. `/tmp` with mode `0o1777`.
    pub fn dir(&mut self, path: &str, mode: u32) -> &mut Self {
        self.insert(path, Entry::Dir { mode })
    }

    /// A symbolic link at `path` pointing to `target`.
    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.insert(
            path,
            Entry::Symlink {
                target: target.to_owned(),
            },
        )
    }

    pub fn entrypoint(&mut self, entrypoint: &[&str]) -> &mut Self {
        self.entrypoint = entrypoint.iter().map(|s| (*s).to_owned()).collect();
        self
    }

    /// The user the image runs as (`uid:gid`).
    pub fn user(&mut self, user: &str) -> &mut Self {
        self.user = user.to_owned();
        self
    }

    pub fn env(&mut self, variable: &str) -> &mut Self {
        self.env.push(variable.to_owned());
        self
    }

    fn insert(&mut self, path: &str, entry: Entry) -> &mut Self {
        let path = path.trim_matches('/').to_owned();
        // Parents first, as tar readers expect; explicit directories keep their own mode.
        let mut parent = Path::new(&path).parent();
        while let Some(dir) = parent.filter(|d| !d.as_os_str().is_empty()) {
            self.entries
                .entry(dir.to_string_lossy().into_owned())
                .or_insert(Entry::Dir { mode: 0o755 });
            parent = dir.parent();
        }
        self.entries.insert(path, entry);
        self
    }

    /// Writes the archive to `out`.
    pub fn write(&self, out: &Path) -> Result<ImageArchive, Error> {
        let (layer_tar, unpacked_size) = self.layer()?;
        let diff_id = sha256(&layer_tar);
        let mut gzip = GzEncoder::new(Vec::new(), Compression::fast());
        gzip.write_all(&layer_tar).map_err(|e| Error::io(out, e))?;
        let layer = gzip.finish().map_err(|e| Error::io(out, e))?;
        drop(layer_tar);
        let layer_digest = sha256(&layer);

        let Documents {
            config,
            manifest,
            index,
            docker_manifest,
        } = self
            .documents(&diff_id, &layer_digest, layer.len())
            .map_err(|e| json_error(out, &e))?;
        let config_digest = sha256(&config);
        let manifest_digest = sha256(&manifest);
        if let Some(dir) = out.parent() {
            fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let file = fs::File::create(out).map_err(|e| Error::io(out, e))?;
        let mut archive = tar::Builder::new(std::io::BufWriter::new(file));
        let mut add = |path: String, bytes: &[u8]| {
            let mut header = file_header(bytes.len() as u64, 0o644);
            archive
                .append_data(&mut header, path, bytes)
                .map_err(|e| Error::io(out, e))
        };
        add("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        add(format!("blobs/sha256/{layer_digest}"), &layer)?;
        add(format!("blobs/sha256/{config_digest}"), &config)?;
        add(format!("blobs/sha256/{manifest_digest}"), &manifest)?;
        add("index.json".into(), &index)?;
        add("manifest.json".into(), &docker_manifest)?;
        archive
            .into_inner()
            .and_then(|mut w| w.flush())
            .map_err(|e| Error::io(out, e))?;

        Ok(ImageArchive {
            path: out.to_owned(),
            name: self.name.clone(),
            manifest_digest: format!("sha256:{manifest_digest}"),
            compressed_size: layer.len() as u64,
            unpacked_size,
            files: self
                .entries
                .iter()
                .filter(|(_, entry)| !matches!(entry, Entry::Dir { .. }))
                .map(|(path, _)| path.clone())
                .collect(),
        })
    }

    /// The image's JSON documents around a layer (`diff_id` and `layer_digest` of it,
    /// `layer_len` bytes compressed): its config, OCI manifest and index, and Docker's
    /// `manifest.json`.
    fn documents(
        &self,
        diff_id: &str,
        layer_digest: &str,
        layer_len: usize,
    ) -> Result<Documents, serde_json::Error> {
        let config = serde_json::to_vec(&json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {
                "User": self.user,
                "Env": self.env,
                "Entrypoint": self.entrypoint,
                "WorkingDir": "/",
            },
            "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{diff_id}")]},
            "history": [{"created_by": "fleet-rs image builder (fleet-testkit::image)"}],
        }))?;
        let config_digest = sha256(&config);
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": format!("sha256:{config_digest}"),
                "size": config.len(),
            },
            "layers": [{
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": format!("sha256:{layer_digest}"),
                "size": layer_len,
            }],
        }))?;
        let manifest_digest = sha256(&manifest);
        let tag = self.name.rsplit_once(':').map_or("latest", |(_, tag)| tag);
        let index = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": format!("sha256:{manifest_digest}"),
                "size": manifest.len(),
                "annotations": {
                    "io.containerd.image.name": self.name,
                    "org.opencontainers.image.ref.name": tag,
                },
            }],
        }))?;
        let docker_manifest = serde_json::to_vec(&json!([{
            "Config": format!("blobs/sha256/{config_digest}"),
            "RepoTags": [self.name],
            "Layers": [format!("blobs/sha256/{layer_digest}")],
        }]))?;
        Ok(Documents {
            config,
            manifest,
            index,
            docker_manifest,
        })
    }

    /// The layer as an uncompressed tar, and the bytes of its files.
    fn layer(&self) -> Result<(Vec<u8>, u64), Error> {
        let mut layer = tar::Builder::new(Vec::new());
        let mut unpacked = 0;
        for (path, entry) in &self.entries {
            let io = |e| Error::io(Path::new(path), e);
            match entry {
                Entry::Dir { mode } => {
                    let mut header = tar::Header::new_gnu();
                    header.set_entry_type(tar::EntryType::Directory);
                    set_common(&mut header, 0, *mode);
                    layer
                        .append_data(&mut header, format!("{path}/"), std::io::empty())
                        .map_err(io)?;
                }
                Entry::Symlink { target } => {
                    let mut header = tar::Header::new_gnu();
                    header.set_entry_type(tar::EntryType::Symlink);
                    set_common(&mut header, 0, 0o777);
                    layer.append_link(&mut header, path, target).map_err(io)?;
                }
                Entry::File { source, mode } => {
                    let bytes = match source {
                        Source::Bytes(bytes) => bytes.clone(),
                        Source::Path(file) => fs::read(file).map_err(|e| Error::io(file, e))?,
                    };
                    unpacked += bytes.len() as u64;
                    let mut header = file_header(bytes.len() as u64, *mode);
                    layer
                        .append_data(&mut header, path, bytes.as_slice())
                        .map_err(io)?;
                }
            }
        }
        let tar = layer
            .into_inner()
            .map_err(|e| Error::io(Path::new("layer"), e))?;
        Ok((tar, unpacked))
    }
}

fn file_header(size: u64, mode: u32) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    set_common(&mut header, size, mode);
    header
}

fn set_common(header: &mut tar::Header, size: u64, mode: u32) {
    header.set_size(size);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_cksum();
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn json_error(out: &Path, error: &serde_json::Error) -> Error {
    Error::Config {
        message: format!("{}: image metadata: {error}", out.display()),
    }
}

/// An image's JSON documents, serialized.
struct Documents {
    config: Vec<u8>,
    manifest: Vec<u8>,
    index: Vec<u8>,
    docker_manifest: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archives_carry_both_layouts_and_are_reproducible() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut image = ImageBuilder::new("example.org/a/b:1.0");
        image
            .bytes("/usr/local/bin/tool", b"#!/bin/true\n".to_vec(), 0o755)
            .dir("/tmp", 0o1777)
            .symlink("/bin", "usr/bin")
            .entrypoint(&["/usr/local/bin/tool"])
            .user("65532:65532");
        let first = image.write(&dir.path().join("a.tar")).expect("write");
        let second = image.write(&dir.path().join("b.tar")).expect("write");
        assert_eq!(first.manifest_digest, second.manifest_digest);
        assert_eq!(first.files, ["bin", "usr/local/bin/tool"]);

        let file = fs::File::open(&first.path).expect("open");
        let mut names: Vec<String> = tar::Archive::new(file)
            .entries()
            .expect("entries")
            .map(|e| {
                e.expect("entry")
                    .path()
                    .expect("path")
                    .display()
                    .to_string()
            })
            .collect();
        names.retain(|n| !n.starts_with("blobs/"));
        assert_eq!(names, ["oci-layout", "index.json", "manifest.json"]);
    }
}
