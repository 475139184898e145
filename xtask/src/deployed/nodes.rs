//! `--provider node`: local control planes with real nodes (fleet-testkit's kubelet +
//! containerd), the image imported into every node's containerd.

use std::net::IpAddr;
use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use fleet_testkit::ControlPlane;
use fleet_testkit::network::HOST_IP;
use fleet_testkit::node::{Node, NodeSpec};

use super::{Cluster, Clusters, say};

/// The upstream's zones, a node each.
pub const UPSTREAM_ZONES: [&str; 3] = ["a", "b", "c"];

/// Planes and their nodes; everything stops on drop (nodes first).
pub struct LocalNodes {
    nodes: Vec<Node>,
    upstream: Cluster,
    downstreams: Vec<Cluster>,
    _planes: Vec<ControlPlane>,
}

impl LocalNodes {
    /// Starts the upstream plane with three zoned nodes and `downstreams` planes with one node
    /// each, and imports `image` into every node; their state and logs go to `work`.
    pub async fn start(image: &Path, downstreams: usize, work: &Path) -> anyhow::Result<Self> {
        let mut planes = Vec::new();
        let mut nodes = Vec::new();
        let mut specs: Vec<Vec<NodeSpec>> = vec![
            UPSTREAM_ZONES
                .iter()
                .enumerate()
                .map(|(i, zone)| spec(&format!("upstream-{zone}"), zone, i))
                .collect(),
        ];
        for d in 1..=downstreams {
            specs.push(vec![spec(&format!("downstream-{d}-a"), "a", 0)]);
        }
        for (p, plane_nodes) in specs.into_iter().enumerate() {
            let name = if p == 0 {
                "upstream".to_owned()
            } else {
                format!("downstream-{p}")
            };
            let started = Instant::now();
            // State (and logs) in the work directory, which a failed run keeps.
            let plane = ControlPlane::builder()
                .name(&name)
                .state_dir(work.join(&name))
                .with_nodes()
                .start()
                .await
                .with_context(|| format!("control plane {name}"))?;
            say(&format!(
                "control plane {name} ready in {:.1}s",
                started.elapsed().as_secs_f64()
            ));
            for node_spec in plane_nodes {
                let started = Instant::now();
                let node = Node::start(&plane, node_spec.clone())
                    .await
                    .with_context(|| format!("node {}", node_spec.name))?;
                let ready = started.elapsed();
                node.import_image(image)?;
                say(&format!(
                    "node {} (zone {}) Ready in {:.1}s, image imported in {:.1}s",
                    node.name(),
                    node.zone().unwrap_or("-"),
                    ready.as_secs_f64(),
                    (started.elapsed() - ready).as_secs_f64()
                ));
                nodes.push(node);
            }
            planes.push(plane);
        }
        let clusters: Vec<Cluster> = planes.iter().map(cluster).collect::<anyhow::Result<_>>()?;
        Ok(Self {
            nodes,
            upstream: clusters[0].clone(),
            downstreams: clusters[1..].to_vec(),
            _planes: planes,
        })
    }

    fn node_mut(&mut self, name: &str) -> anyhow::Result<&mut Node> {
        self.nodes
            .iter_mut()
            .find(|n| n.name() == name)
            .with_context(|| format!("no node {name}"))
    }
}

fn spec(name: &str, zone: &str, index: usize) -> NodeSpec {
    NodeSpec {
        name: name.to_owned(),
        zone: Some(zone.to_owned()),
        index: u8::try_from(index).unwrap_or(u8::MAX),
    }
}

fn cluster(plane: &ControlPlane) -> anyhow::Result<Cluster> {
    Ok(Cluster {
        name: plane.name().to_owned(),
        kubeconfig: plane.kubeconfig_path().to_owned(),
        client: plane.client(),
        api_url_for_pods: plane.server().to_owned(),
        ca_pem: std::fs::read_to_string(plane.ca_cert_path())?,
        // The plane serves on the host address pods reach: its own kubeconfig works there.
        kubeconfig_for_pods: std::fs::read_to_string(plane.kubeconfig_path())?,
    })
}

impl Clusters for LocalNodes {
    fn upstream(&self) -> &Cluster {
        &self.upstream
    }

    fn downstreams(&self) -> &[Cluster] {
        &self.downstreams
    }

    fn host_ip(&self) -> IpAddr {
        HOST_IP.into()
    }

    async fn stop_node(&mut self, node: &str) -> anyhow::Result<()> {
        self.node_mut(node)?.stop();
        Ok(())
    }

    async fn start_node(&mut self, node: &str) -> anyhow::Result<()> {
        Ok(self.node_mut(node)?.restart().await?)
    }
}

impl Drop for LocalNodes {
    fn drop(&mut self) {
        // Nodes before their planes: the kubelets' last calls still find an API server.
        self.nodes.clear();
    }
}
