//! `cargo xtask image`: the one OCI image of every fleet-rs binary, built without Docker.
//!
//! The layout is the Dockerfile's (`FROM scratch` with the same files): the release binaries,
//! the pinned `helm` and `kustomize` in `/usr/local/bin`, the shared libraries the Rust
//! binaries link (found with `ldd`, placed where the dynamic loader looks), the CA bundle,
//! `/etc/passwd` with the non-root user 65532 and a world-writable `/tmp`. The archive is
//! imported by containerd (`ctr images import`), `kind load image-archive` and `docker load`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use fleet_testkit::binaries::{self, Tool};
use fleet_testkit::image::{ImageArchive, ImageBuilder};

/// The binaries of the image, built by this workspace.
pub const BINARIES: [&str; 5] = [
    "fleet-controller",
    "gitjob",
    "helmops",
    "fleet-agent",
    "fleet",
];
/// The image repository the chart uses by default (`image.repository`).
pub const REPOSITORY: &str = "ghcr.io/fleet-rs/fleet-rs";
const USER: &str = "65532:65532";
const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

#[derive(Debug, clap::Args)]
pub struct ImageArgs {
    /// Where to write the archive (default: `<target dir>/image/fleet-rs-<version>.tar`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print the image's file list (to compare with the Dockerfile's).
    #[arg(long)]
    pub list: bool,
}

pub fn run(args: &ImageArgs) -> anyhow::Result<()> {
    let archive = build(args.out.as_deref())?;
    if args.list {
        for file in &archive.files {
            println!("/{file}");
        }
    }
    Ok(())
}

/// Builds the release binaries and writes the image archive; returns what was written.
pub fn build(out: Option<&Path>) -> anyhow::Result<ImageArchive> {
    let started = std::time::Instant::now();
    let target = target_dir();
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo
        .current_dir(workspace_root())
        .args(["build", "--release", "--locked", "--bins"]);
    for package in [
        "fleet-controller",
        "gitjob",
        "helmops",
        "fleet-agent",
        "fleet-cli",
    ] {
        cargo.args(["-p", package]);
    }
    let status = cargo.status().context("running cargo build --release")?;
    if !status.success() {
        bail!("cargo build --release failed ({status})");
    }

    let name = format!("{REPOSITORY}:{}", chart_app_version()?);
    let mut image = ImageBuilder::new(&name);
    let mut libraries = std::collections::BTreeSet::new();
    for binary in BINARIES {
        let path = target.join("release").join(binary);
        image.file(&format!("/usr/local/bin/{binary}"), &path, 0o755);
        libraries.extend(linked_libraries(&path)?);
    }
    for tool in [Tool::Helm, Tool::Kustomize] {
        let path = binaries::ensure(tool)?;
        image.file(
            &format!("/usr/local/bin/{}", tool.binary_name()),
            &path,
            0o755,
        );
    }
    for library in &libraries {
        let real = std::fs::canonicalize(library)
            .with_context(|| format!("resolving {}", library.display()))?;
        image.file(&library.to_string_lossy(), &real, 0o755);
    }
    image
        .file(CA_BUNDLE, Path::new(CA_BUNDLE), 0o644)
        .bytes(
            "/etc/passwd",
            "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/tmp:/sbin/nologin\n",
            0o644,
        )
        .bytes("/etc/group", "root:x:0:\nnonroot:x:65532:\n", 0o644)
        .dir("/tmp", 0o1777)
        .env("HOME=/tmp")
        .env(&format!("SSL_CERT_FILE={CA_BUNDLE}"))
        .user(USER)
        .entrypoint(&["/usr/local/bin/fleet-controller"]);
    let out = out.map_or_else(
        || {
            target.join("image").join(format!(
                "fleet-rs-{}.tar",
                chart_app_version().unwrap_or_default()
            ))
        },
        Path::to_owned,
    );
    let archive = image.write(&out)?;
    eprintln!(
        "==> image {} ({}) written to {} in {:.0?}: {:.1} MiB compressed, {:.1} MiB unpacked, {} files",
        archive.name,
        archive.manifest_digest,
        archive.path.display(),
        started.elapsed(),
        mib(archive.compressed_size),
        mib(archive.unpacked_size),
        archive.files.len()
    );
    Ok(archive)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1024.0 / 1024.0
}

/// The shared libraries `ldd` reports for a binary, as the paths the loader opens (the
/// loader itself included).
fn linked_libraries(binary: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let output = Command::new("ldd")
        .arg(binary)
        .output()
        .with_context(|| format!("ldd {}", binary.display()))?;
    if !output.status.success() {
        bail!(
            "ldd {}: {}",
            binary.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(parse_ldd(&String::from_utf8_lossy(&output.stdout)))
}

fn parse_ldd(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            let path = match line.split_once("=>") {
                Some((_, right)) => right.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// The chart's appVersion: the image tag the chart uses unless `image.tag` is set.
pub fn chart_app_version() -> anyhow::Result<String> {
    let chart = workspace_root().join("charts/fleet/Chart.yaml");
    let text = std::fs::read_to_string(&chart).with_context(|| chart.display().to_string())?;
    text.lines()
        .find_map(|l| l.strip_prefix("appVersion:"))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .context("Chart.yaml has no appVersion")
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_root().join("target"), PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_gives_the_paths_the_loader_opens() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibssl.so.3 => /lib/x86_64-linux-gnu/libssl.so.3 (0x1)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x2)\n\t/lib64/ld-linux-x86-64.so.2 (0x3)\n";
        assert_eq!(
            parse_ldd(text),
            [
                PathBuf::from("/lib/x86_64-linux-gnu/libssl.so.3"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
    }
}
