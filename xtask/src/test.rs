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
    step("system packages", crate::packages::ensure_sshd)?;
    if !args.no_lint {
        step("cargo fmt --check", || {
            cargo(&["fmt", "--all", "--", "--check"])
        })?;
        step("cargo clippy -D warnings", || {
            cargo(&[
                "clippy",
                "--workspace",
                "--all-targets",
                "--locked",
                "--",
                "-D",
                "warnings",
            ])
        })?;
    }
    step("cargo test", || {
        let mut test_args = vec!["test", "--workspace", "--locked", "--no-fail-fast"];
        test_args.extend(args.cargo_test_args.iter().map(String::as_str));
        cargo(&test_args)
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

fn cargo(args: &[&str]) -> anyhow::Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(args)
        .status()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("cargo {} exited with {status}", args.join(" "));
    }
    Ok(())
}
