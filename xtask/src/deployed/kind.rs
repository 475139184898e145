//! `--provider kind`: kind clusters on Docker, the image loaded with `kind load image-archive`.
//!
//! Only cluster creation, image loading and node stop/start live here; everything checked is
//! the shared scenario. Untested on the machine kind this project is built on (no Docker
//! engine): what is untested is exactly this file.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use super::nodes::UPSTREAM_ZONES;
use super::{Cluster, Clusters, say};

const PREFIX: &str = "fleet-rs";

/// kind clusters, deleted on drop.
pub struct KindClusters {
    names: Vec<String>,
    upstream: Cluster,
    downstreams: Vec<Cluster>,
    host_ip: IpAddr,
}

impl KindClusters {
    pub async fn start(image: &Path, downstreams: usize, work: &Path) -> anyhow::Result<Self> {
        let mut names = Vec::new();
        let mut clusters = Vec::new();
        for p in 0..=downstreams {
            let name = if p == 0 {
                format!("{PREFIX}-upstream")
            } else {
                format!("{PREFIX}-downstream-{p}")
            };
            let config = work.join(format!("{name}.kind.yaml"));
            std::fs::write(
                &config,
                kind_config(if p == 0 { &UPSTREAM_ZONES } else { &["a"] }),
            )?;
            let kubeconfig = work.join(format!("{name}.kubeconfig"));
            kind(&[
                "create",
                "cluster",
                "--name",
                &name,
                "--config",
                &config.to_string_lossy(),
                "--kubeconfig",
                &kubeconfig.to_string_lossy(),
                "--wait",
                "120s",
            ])?;
            names.push(name.clone());
            kind(&[
                "load",
                "image-archive",
                &image.to_string_lossy(),
                "--name",
                &name,
            ])?;
            say(&format!("kind cluster {name} created, image loaded"));
            clusters.push(cluster(&name, kubeconfig).await?);
        }
        let gateway = docker(&[
            "network",
            "inspect",
            "kind",
            "-f",
            "{{(index .IPAM.Config 0).Gateway}}",
        ])?;
        Ok(Self {
            names,
            upstream: clusters.remove(0),
            downstreams: clusters,
            host_ip: gateway.parse().context("kind network gateway")?,
        })
    }
}

/// One control plane and a worker per zone, labelled with its zone.
fn kind_config(zones: &[&str]) -> String {
    let mut config = String::from(
        "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n- role: control-plane\n",
    );
    for zone in zones {
        config.push_str(&format!(
            "- role: worker\n  labels:\n    topology.kubernetes.io/zone: \"{zone}\"\n"
        ));
    }
    config
}

async fn cluster(name: &str, kubeconfig: PathBuf) -> anyhow::Result<Cluster> {
    let config = kube::config::Kubeconfig::read_from(&kubeconfig)?;
    let ca_pem = config
        .clusters
        .first()
        .and_then(|c| c.cluster.as_ref())
        .and_then(|c| c.certificate_authority_data.as_deref())
        .map(decode_base64)
        .transpose()?
        .unwrap_or_default();
    let options = kube::config::KubeConfigOptions::default();
    let client =
        kube::Client::try_from(kube::Config::from_custom_kubeconfig(config, &options).await?)?;
    let address = docker(&[
        "inspect",
        "-f",
        "{{.NetworkSettings.Networks.kind.IPAddress}}",
        &format!("{name}-control-plane"),
    ])?;
    Ok(Cluster {
        name: name.to_owned(),
        kubeconfig,
        client,
        api_url_for_pods: format!("https://{address}:6443"),
        ca_pem,
        kubeconfig_for_pods: kind(&["get", "kubeconfig", "--internal", "--name", name])?,
    })
}

impl Clusters for KindClusters {
    fn upstream(&self) -> &Cluster {
        &self.upstream
    }

    fn downstreams(&self) -> &[Cluster] {
        &self.downstreams
    }

    fn host_ip(&self) -> IpAddr {
        self.host_ip
    }

    async fn stop_node(&mut self, node: &str) -> anyhow::Result<()> {
        docker(&["stop", "--time", "0", node]).map(|_| ())
    }

    async fn start_node(&mut self, node: &str) -> anyhow::Result<()> {
        docker(&["start", node]).map(|_| ())
    }
}

impl Drop for KindClusters {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = kind(&["delete", "cluster", "--name", name]);
        }
    }
}

/// The CA of a kind kubeconfig (base64 in `certificate-authority-data`).
fn decode_base64(data: &str) -> anyhow::Result<String> {
    use base64::Engine as _;
    let pem = base64::engine::general_purpose::STANDARD.decode(data.trim())?;
    Ok(String::from_utf8(pem)?)
}

fn kind(args: &[&str]) -> anyhow::Result<String> {
    output("kind", args)
}

fn docker(args: &[&str]) -> anyhow::Result<String> {
    output("docker", args)
}

fn output(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("{program} (is it installed?)"))?;
    if !out.status.success() {
        bail!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}
