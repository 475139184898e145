//! The image the Dockerfile builds has the files `cargo xtask image` writes without Docker.
//!
//! Needs a Docker engine (skipped without one, as on this project's CI machines, where the
//! `cargo xtask image` path is the one tested: `cargo xtask e2e --provider node` runs it).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

fn docker_engine() -> bool {
    Command::new("docker")
        .arg("info")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .output()
        .expect("runs");
    assert!(
        output.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Regular files and symlinks: directories (with a trailing `/` in tar listings) differ only
/// in which parents each tool records.
fn files(listing: &str) -> BTreeSet<String> {
    listing
        .lines()
        .map(|l| {
            format!(
                "/{}",
                l.trim().trim_start_matches("./").trim_start_matches('/')
            )
        })
        .filter(|l| !l.ends_with('/') && l != "/")
        .collect()
}

#[test]
fn the_dockerfile_and_xtask_image_have_the_same_files() {
    if !docker_engine() {
        eprintln!("skipped: no Docker engine (`docker info` fails)");
        return;
    }
    let tag = "fleet-rs-layout-test:latest";
    run("docker", &["build", "-t", tag, "."]);
    let container = run("docker", &["create", tag]).trim().to_owned();
    let exported = run(
        "sh",
        &["-c", &format!("docker export {container} | tar -t")],
    );
    run("docker", &["rm", &container]);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let listed = run(&cargo, &["xtask", "image", "--list"]);
    let docker_files: BTreeSet<String> = files(&exported)
        .into_iter()
        // Docker adds these to every container's filesystem.
        .filter(|f| {
            !matches!(
                f.as_str(),
                "/.dockerenv" | "/etc/hosts" | "/etc/hostname" | "/etc/resolv.conf"
            )
        })
        .filter(|f| !f.starts_with("/dev/") && !f.starts_with("/proc/") && !f.starts_with("/sys/"))
        .collect();
    let xtask_files = files(&listed);
    assert_eq!(docker_files, xtask_files);
}
