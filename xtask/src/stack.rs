//! The whole stack on local control planes, as `cargo xtask demo` and `cargo xtask e2e` run
//! it: an upstream plane with fleet-controller, gitjob and helmops (N replicas each,
//! leader-elected),
//! downstream planes each with a registered fleet-agent, all real processes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use fleet_api::{Cluster, ClusterGroup, ClusterRegistrationToken};
use fleet_testkit::binaries::{Tool, ensure};
use fleet_testkit::{
    ControlPlane, Lifetime, ManagedProcess, apply_crds, ports, wait_for, wait_for_count,
};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::PostParams;
use kube::{Api, ResourceExt};

/// The workspace GitRepos and Clusters live in.
pub const NS: &str = "fleet-default";
/// Lease timings of the stack: short, so that failovers are quick to watch.
pub const LEASE: [&str; 3] = [
    "--election-lease-duration=4s",
    "--election-renew-deadline=3s",
    "--election-retry-period=500ms",
];

/// gitjob runs with dynamic shards: GitRepos spread over this many shard Leases
/// (`fleet-gitops-leader-election-shard-<i>-of-<N>`), each held by one of the live replicas.
pub const GITJOB_SHARDS: u32 = 3;
/// The base name of gitjob's shard Leases.
pub const GITJOB_LEASE: &str = "fleet-gitops-leader-election-shard";

/// The Lease of gitjob's shard `shard`.
pub fn gitjob_shard_lease(shard: u32) -> String {
    format!("{GITJOB_LEASE}-{shard}-of-{GITJOB_SHARDS}")
}

/// Builds the binaries (dev profile, as the tests do) and returns their directory.
pub fn build_binaries() -> anyhow::Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--locked",
            "-p",
            "fleet-controller",
            "-p",
            "gitjob",
            "-p",
            "helmops",
            "-p",
            "fleet-agent",
            "--bins",
        ])
        .status()
        .context("cargo build")?;
    if !status.success() {
        bail!("building the binaries failed");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    Ok(target.join("debug"))
}

/// One running replica of a component.
pub struct Replica {
    pub component: &'static str,
    pub identity: String,
    pub process: ManagedProcess,
    pub admin_port: u16,
    plane: usize,
    extra: Vec<String>,
}

/// The running stack; everything stops on drop.
pub struct Stack {
    pub upstream: ControlPlane,
    pub downstreams: Vec<ControlPlane>,
    pub replicas: Vec<Replica>,
    pub work: PathBuf,
    bin: PathBuf,
}

impl Stack {
    /// Starts planes and components; returns once every downstream cluster has registered.
    pub async fn start(
        work: &Path,
        downstreams: usize,
        replicas: usize,
        say: impl Fn(&str),
    ) -> anyhow::Result<Self> {
        let bin = build_binaries()?;
        for tool in [Tool::Helm, Tool::Kustomize] {
            ensure(tool)?;
        }
        let started = Instant::now();
        let upstream = ControlPlane::builder().name("upstream").start().await?;
        let mut planes = Vec::new();
        for i in 0..downstreams {
            planes.push(
                ControlPlane::builder()
                    .name(format!("downstream-{}", i + 1))
                    .start()
                    .await?,
            );
        }
        say(&format!(
            "control planes up: upstream + {downstreams} downstream ({:.1}s)",
            started.elapsed().as_secs_f64()
        ));
        let up = upstream.client();
        apply_crds(&up, &fleet_api::crds()).await?;
        let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": NS}}))?;
        Api::<Namespace>::all(up.clone())
            .create(&PostParams::default(), &ns)
            .await?;
        let mut stack = Self {
            upstream,
            downstreams: planes,
            replicas: Vec::new(),
            work: work.to_owned(),
            bin,
        };
        for i in 0..replicas {
            stack.spawn_upstream_replicas(i)?;
        }
        let values = stack.registration_values().await?;
        for plane in 1..=downstreams {
            for i in 0..replicas.min(2) {
                stack.spawn_agent(plane, i, &values)?;
            }
        }
        stack.wait_registered().await?;
        say(&format!(
            "stack up: {} processes, {downstreams} clusters registered ({:.1}s)",
            stack.replicas.len(),
            started.elapsed().as_secs_f64()
        ));
        Ok(stack)
    }

    /// Starts replica `i` of each upstream component: fleet-controller, helmops and gitjob
    /// (with its dynamic shards).
    fn spawn_upstream_replicas(&mut self, i: usize) -> anyhow::Result<()> {
        let server = self.upstream.server().to_owned();
        let ca = self.upstream.ca_cert_path();
        self.spawn(
            "fleet-controller",
            &format!("controller-{i}"),
            0,
            vec![
                format!("--api-server-url={server}"),
                format!("--api-server-ca-file={}", ca.display()),
            ],
        )?;
        self.spawn("helmops", &format!("helmops-{i}"), 0, Vec::new())?;
        let cache = self.work.join(format!("gitjob-{i}"));
        self.spawn(
            "gitjob",
            &format!("gitjob-{i}"),
            0,
            vec![
                format!("--webhook-bind-address=127.0.0.1:{}", ports::free_port()?),
                format!("--cache-dir={}", cache.display()),
                "--git-client-timeout=10s".to_owned(),
                format!("--shards={GITJOB_SHARDS}"),
            ],
        )
    }

    /// Creates the ClusterRegistrationToken `demo-token` and writes the agent values the
    /// controller answers with to a file; returns its path.
    async fn registration_values(&self) -> anyhow::Result<PathBuf> {
        let up = self.upstream.client();
        let token: ClusterRegistrationToken = serde_json::from_value(
            serde_json::json!({"metadata": {"name": "demo-token"}, "spec": {"ttl": "2h"}}),
        )?;
        Api::<ClusterRegistrationToken>::namespaced(up.clone(), NS)
            .create(&PostParams::default(), &token)
            .await?;
        let path = self.work.join("token-values.json");
        fleet_testkit::write_token_values(&up, NS, "demo-token", &path, Duration::from_secs(120))
            .await?;
        Ok(path)
    }

    /// Starts agent replica `i` on downstream cluster `plane` (from 1), registering with
    /// the token values in `values`.
    fn spawn_agent(&mut self, plane: usize, i: usize, values: &Path) -> anyhow::Result<()> {
        self.spawn(
            "fleet-agent",
            &format!("agent-{plane}-{i}"),
            plane,
            vec![
                format!("--registration-values={}", values.display()),
                "--heartbeat-interval=5s".to_owned(),
                "--drift-interval=2s".to_owned(),
                format!("--helm={}", ensure(Tool::Helm)?.display()),
                format!("--kustomize={}", ensure(Tool::Kustomize)?.display()),
            ],
        )
    }

    /// Creates the ClusterGroup `default` of every cluster and waits until every downstream
    /// cluster has registered and reported in.
    async fn wait_registered(&self) -> anyhow::Result<()> {
        let up = self.upstream.client();
        let group: ClusterGroup = serde_json::from_value(
            serde_json::json!({"metadata": {"name": "default"}, "spec": {"selector": {}}}),
        )?;
        Api::<ClusterGroup>::namespaced(up.clone(), NS)
            .create(&PostParams::default(), &group)
            .await?;
        let clusters: Api<Cluster> = Api::namespaced(up, NS);
        wait_for_count(
            &clusters,
            "every downstream cluster registered",
            self.downstreams.len(),
            Duration::from_secs(180),
            |c: &Cluster| {
                c.status
                    .as_ref()
                    .is_some_and(|s| s.agent.last_seen.is_some())
            },
        )
        .await
        .with_context(|| format!("logs in {}", self.work.display()))?;
        Ok(())
    }

    /// Starts a replica of `component` against `plane` (0 upstream, i the i-th downstream).
    fn spawn(
        &mut self,
        component: &'static str,
        identity: &str,
        plane: usize,
        extra: Vec<String>,
    ) -> anyhow::Result<()> {
        let kubeconfig = match plane {
            0 => self.upstream.kubeconfig_path().to_owned(),
            i => self.downstreams[i - 1].kubeconfig_path().to_owned(),
        };
        let admin_port = ports::free_port()?;
        let mut cmd = Command::new(self.bin.join(component));
        cmd.args([
            format!("--kubeconfig={}", kubeconfig.display()),
            "--namespace=default".to_owned(),
            format!("--metrics-bind-address=127.0.0.1:{admin_port}"),
            format!("--health-bind-address=127.0.0.1:{admin_port}"),
            format!("--election-identity={identity}"),
        ])
        .args(LEASE)
        .args(&extra)
        .env("RUST_LOG", "info");
        let process = ManagedProcess::spawn(
            identity,
            cmd,
            &self.work.join(format!("{identity}.log")),
            Lifetime::Owned,
        )?;
        self.replicas.push(Replica {
            component,
            identity: identity.to_owned(),
            process,
            admin_port,
            plane,
            extra,
        });
        Ok(())
    }

    /// Starts a stopped replica again, as it was started.
    pub fn restart(&mut self, identity: &str) -> anyhow::Result<()> {
        let index = self
            .replicas
            .iter()
            .position(|r| r.identity == identity)
            .with_context(|| format!("no replica {identity}"))?;
        let old = self.replicas.remove(index);
        let Replica {
            component,
            plane,
            extra,
            mut process,
            ..
        } = old;
        process.kill();
        self.spawn(component, identity, plane, extra)
    }

    /// The current holder of each upstream component's Lease (`default` namespace), then
    /// of each downstream cluster's (named `downstream-<n>/<lease>`).
    pub async fn leaders(&self) -> anyhow::Result<Vec<LeaseHolder>> {
        let mut out = lease_holders(&self.upstream.client()).await?;
        for (i, plane) in self.downstreams.iter().enumerate() {
            for mut lease in lease_holders(&plane.client()).await? {
                lease.lease = format!("downstream-{}/{}", i + 1, lease.lease);
                out.push(lease);
            }
        }
        Ok(out)
    }

    /// gitjob's shard map once every shard is held (the live replicas share them, each shard
    /// once): each shard with the replica holding its Lease.
    pub async fn gitjob_shard_map(&self) -> anyhow::Result<Vec<(u32, String)>> {
        let ports: Vec<u16> = self
            .replicas
            .iter()
            .filter(|r| r.component == "gitjob" && r.process.pid().is_some())
            .map(|r| r.admin_port)
            .collect();
        fleet_testkit::wait_shards_covered(&ports, GITJOB_SHARDS, Duration::from_secs(60))
            .await
            .context("gitjob's shards")?;
        let holders = lease_holders(&self.upstream.client()).await?;
        Ok((0..GITJOB_SHARDS)
            .map(|shard| {
                let lease = gitjob_shard_lease(shard);
                let holder = holders
                    .iter()
                    .find(|l| l.lease == lease)
                    .map(|l| l.holder.clone())
                    .unwrap_or_default();
                (shard, holder)
            })
            .collect())
    }

    /// Each replica with its component and the role its `/readyz` reports.
    pub async fn roles(&self) -> Vec<(String, &'static str, String)> {
        let mut out = Vec::new();
        for replica in &self.replicas {
            let body = fleet_testkit::http_get(replica.admin_port, "/readyz")
                .await
                .unwrap_or_default();
            let role = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["role"].as_str().map(str::to_owned))
                .unwrap_or_else(|| "unreachable".to_owned());
            out.push((replica.identity.clone(), replica.component, role));
        }
        out
    }

    /// The downstream clusters as the example's checks see them (`downstream-<n>`).
    pub fn downstream_clusters(&self) -> Vec<crate::example::Downstream> {
        self.downstreams
            .iter()
            .enumerate()
            .map(|(i, plane)| crate::example::Downstream {
                name: format!("downstream-{}", i + 1),
                client: plane.client(),
            })
            .collect()
    }

    /// The replica holding `identity`.
    pub fn replica_mut(&mut self, identity: &str) -> Option<&mut Replica> {
        self.replicas.iter_mut().find(|r| r.identity == identity)
    }

    /// Stops the leader of an upstream `lease` (SIGKILL or SIGTERM) and returns the time
    /// until another replica holds the Lease.
    pub async fn failover(
        &mut self,
        lease: &str,
        kill: bool,
    ) -> anyhow::Result<(String, String, Duration)> {
        self.failover_on(0, lease, kill).await
    }

    /// [`Stack::failover`] on `plane` (0 upstream, i the i-th downstream: its agents' Lease).
    pub async fn failover_on(
        &mut self,
        plane: usize,
        lease: &str,
        kill: bool,
    ) -> anyhow::Result<(String, String, Duration)> {
        let client = match plane {
            0 => self.upstream.client(),
            i => self.downstreams[i - 1].client(),
        };
        let leases: Api<Lease> = Api::namespaced(client, "default");
        let holder = |l: &Lease| {
            l.spec
                .as_ref()
                .and_then(|s| s.holder_identity.clone())
                .unwrap_or_default()
        };
        // A shard Lease may be between owners (handed over after a replica joined).
        let old = holder(
            &wait_for(&leases, lease, Duration::from_secs(60), |l| {
                !holder(l).is_empty()
            })
            .await?,
        );
        let replica = self
            .replica_mut(&old)
            .with_context(|| format!("no replica {old}"))?;
        let started = Instant::now();
        if kill {
            replica.process.kill();
        } else {
            replica.process.signal(fleet_testkit::process::SIGTERM)?;
        }
        let new = wait_for(&leases, lease, Duration::from_secs(60), |l| {
            let h = holder(l);
            !h.is_empty() && h != old
        })
        .await?;
        Ok((old, holder(&new), started.elapsed()))
    }
}

/// Each Lease of the `default` namespace with its holder (empty when none).
async fn lease_holders(client: &kube::Client) -> anyhow::Result<Vec<LeaseHolder>> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "default");
    Ok(leases
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .map(|lease| {
            let spec = lease.spec.clone().unwrap_or_default();
            LeaseHolder {
                lease: lease.name_any(),
                holder: spec.holder_identity.unwrap_or_default(),
                transitions: spec.lease_transitions.unwrap_or_default(),
            }
        })
        .collect())
}

/// A Lease of the stack, who holds it, and how often it changed hands.
#[derive(Debug, Clone)]
pub struct LeaseHolder {
    pub lease: String,
    pub holder: String,
    /// `spec.leaseTransitions`: every change of holder since the Lease was made.
    pub transitions: i32,
}
