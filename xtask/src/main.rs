//! `cargo xtask`: the project's commands, in plain Rust (no make, no shell scripts).
//!
//! - `tools`: build the pinned control-plane and helm binaries into the cache (once per machine);
//! - `controlplane up|down|list`: detached local control planes for manual work;
//! - `test`: the README's test command (tools, fmt, clippy, all tests);
//! - `bench failover`: leader failover times with real processes.

mod bench;
mod controlplane;
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
        Command::Bench { bench } => bench::run(bench),
    }
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
