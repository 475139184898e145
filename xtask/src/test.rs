//! `cargo xtask test`: the one test command of the README and of `.ci/run`.

use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Skip `cargo fmt --check` and clippy (only run the tests).
    #[arg(long)]
    no_lint: bool,
    /// Extra arguments passed to `cargo test` (after `--workspace`).
    #[arg(last = true)]
    cargo_test_args: Vec<String>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let started = Instant::now();
    step("pinned binaries", || crate::tools().map(|_| ()))?;
    let nodes = crate::packages::is_root();
    step("system packages", || {
        crate::packages::ensure_sshd()?;
        if nodes {
            crate::packages::ensure_node_packages()
        } else {
            eprintln!("not root: the tests that start nodes (kubelet, containerd) are skipped");
            Ok(())
        }
    })?;
    if !args.no_lint {
        step("cargo fmt --check", || {
            cargo(&["fmt", "--all", "--", "--check"], false)
        })?;
        step("cargo clippy -D warnings", || {
            cargo(
                &[
                    "clippy",
                    "--workspace",
                    "--all-targets",
                    "--locked",
                    "--",
                    "-D",
                    "warnings",
                ],
                false,
            )
        })?;
    }
    step("cargo test", || {
        let mut test_args = vec!["test", "--workspace", "--locked", "--no-fail-fast"];
        test_args.extend(args.cargo_test_args.iter().map(String::as_str));
        cargo(&test_args, nodes)
    })?;
    eprintln!("xtask test: all green in {:.0?}", started.elapsed());
    Ok(())
}

fn step(name: &str, f: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<()> {
    let started = Instant::now();
    eprintln!("==> {name}");
    f().with_context(|| format!("step `{name}` failed"))?;
    eprintln!("<== {name} ({:.1?})", started.elapsed());
    Ok(())
}

fn cargo(args: &[&str], nodes: bool) -> anyhow::Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    if nodes {
        // The tests that start nodes (kubelet, containerd) need root and what
        // ensure_node_packages installed.
        command.env("FLEET_RS_NODE_TESTS", "1");
    }
    let status = command
        .args(args)
        .status()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("cargo {} exited with {status}", args.join(" "));
    }
    Ok(())
}
