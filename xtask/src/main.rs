//! `cargo xtask`: the project's commands, in plain Rust (no make, no shell scripts).
//!
//! - `tools`: build the pinned control-plane and helm binaries into the cache (once per machine);
//! - `controlplane up|down|list`: detached local control planes for manual work;
//! - `test`: the README's test command (tools, fmt, clippy, all tests);
//! - `crds [--check|--apply]`: the CRDs generated from the Rust types, into the chart (or
//!   into the cluster of `KUBECONFIG`);
//! - `image`: the OCI image archive of every binary, without Docker;
//! - `bench failover|gitjob|fanout|agent`: numbers;
//! - `demo`, `e2e`: the whole stack on local control planes.

mod agent_failover;
mod bench;
mod controlplane;
mod demo;
mod deployed;
mod example;
mod image;
mod packages;
mod stack;
mod test;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "fleet-rs project commands")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build (or find) the pinned etcd, kube-apiserver, kube-controller-manager and helm.
    Tools,
    /// Local control planes (etcd + kube-apiserver + kube-controller-manager) as processes.
    Controlplane {
        #[command(subcommand)]
        command: controlplane::Command,
    },
    /// Install what the tests need, then run fmt, clippy and every unit and integration test.
    Test(test::Args),
    /// Write the CRDs generated from crates/fleet-api into the chart.
    Crds {
        /// Only check that the checked-in CRDs are up to date.
        #[arg(long, conflicts_with = "apply")]
        check: bool,
        /// Install them into the cluster of `KUBECONFIG` instead (server-side apply; waits
        /// until each is established), e.g. a plane of `cargo xtask controlplane up`.
        #[arg(long)]
        apply: bool,
    },
    /// The whole stack on local control planes, a GitRepo deployed to a registered cluster,
    /// and a leader failover, narrated.
    Demo(demo::DemoArgs),
    /// End-to-end scenarios: two downstream clusters, plain/Helm/kustomize bundles, failover
    /// drills with a git change in flight.
    E2e(demo::E2eArgs),
    /// The OCI image of every binary (plus helm and kustomize) as an archive that containerd,
    /// kind and `docker load` import; built without Docker.
    Image(image::ImageArgs),
    /// Benchmarks that print numbers.
    Bench {
        #[command(subcommand)]
        bench: bench::Bench,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Tools => tools().map(|_| ()),
        Command::Controlplane { command } => controlplane::run(command),
        Command::Test(args) => test::run(args),
        Command::Crds { apply: true, .. } => apply_crds(),
        Command::Crds { check, .. } => crds(check),
        Command::Bench { bench } => bench::run(bench),
        Command::Image(args) => image::run(&args),
        Command::Demo(args) => demo::demo(&args),
        Command::E2e(args) => demo::e2e(&args),
    }
}

/// Where the generated CRDs live in the umbrella chart.
pub const CRDS_PATH: &str = "charts/fleet/templates/crds.yaml";

/// Installs the CRDs into the cluster of `KUBECONFIG`.
fn apply_crds() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = kube::Client::try_default()
            .await
            .map_err(|e| anyhow::anyhow!("no cluster to install into (set KUBECONFIG): {e}"))?;
        let crds = fleet_api::crds();
        fleet_testkit::apply_crds(&client, &crds).await?;
        eprintln!("installed {} CRDs; each is established", crds.len());
        Ok(())
    })
}

fn crds(check: bool) -> anyhow::Result<()> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(CRDS_PATH);
    let generated = fleet_api::crds_chart_template()?;
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    if check {
        anyhow::ensure!(
            current == generated,
            "{CRDS_PATH} is out of date: run `cargo xtask crds` and commit the result"
        );
        eprintln!("{CRDS_PATH} is up to date");
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&path, generated)?;
    eprintln!("wrote {} CRDs to {CRDS_PATH}", fleet_api::crds().len());
    Ok(())
}

/// Makes sure every pinned binary exists, building what is missing; prints where they are.
fn tools() -> anyhow::Result<Vec<std::path::PathBuf>> {
    use fleet_testkit::binaries::{Tool, ensure};
    Tool::ALL
        .into_iter()
        .map(|tool| {
            let path = ensure(tool)?;
            eprintln!("{:<24} {}", tool.binary_name(), path.display());
            Ok(path)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
