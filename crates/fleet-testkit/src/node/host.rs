//! What a node leaves on the host and how it goes: its cgroups in every cgroup v1 hierarchy,
//! the processes in them and those naming its socket (shims), and the mounts under its
//! directory (overlays, network namespaces, secret volumes).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Error;

/// The cgroup v1 hierarchies (controllers and named ones) mounted under /sys/fs/cgroup.
fn cgroup_hierarchies() -> Vec<PathBuf> {
    fs::read_dir("/sys/fs/cgroup")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_dir() && !p.ends_with("unified"))
                .collect()
        })
        .unwrap_or_default()
}

/// The node's cgroup root in every hierarchy; cpuset needs its cpus and mems filled in before
/// anything can join it.
pub(super) fn create_cgroup_root(name: &str) -> Result<(), Error> {
    for hierarchy in cgroup_hierarchies() {
        let dir = hierarchy.join(name);
        fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        if hierarchy.ends_with("cpuset") {
            for file in ["cpuset.cpus", "cpuset.mems"] {
                let parent = hierarchy.join(file);
                let value = fs::read_to_string(&parent).map_err(|e| Error::io(&parent, e))?;
                let target = dir.join(file);
                fs::write(&target, value.trim()).map_err(|e| Error::io(&target, e))?;
            }
        }
    }
    Ok(())
}

/// SIGKILLs every process in the node's cgroups (its containers).
pub(super) fn kill_cgroup_tree(name: &str) {
    let pids = cgroup_hierarchies()
        .into_iter()
        .find(|h| h.ends_with("pids"))
        .map(|h| h.join(name));
    let Some(root) = pids else { return };
    for dir in walk_dirs(&root) {
        let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) else {
            continue;
        };
        for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            let _ = crate::process::send_signal(pid.unsigned_abs(), libc::SIGKILL);
        }
    }
}

/// Removes the node's cgroups, deepest first (best effort; a cgroup with processes stays).
pub(super) fn remove_cgroup_tree(name: &str) {
    for hierarchy in cgroup_hierarchies() {
        let mut dirs = walk_dirs(&hierarchy.join(name));
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for dir in dirs {
            let _ = fs::remove_dir(&dir);
        }
    }
}

fn walk_dirs(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        if let Ok(entries) = fs::read_dir(&dir) {
            stack.extend(
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.is_dir()),
            );
            out.push(dir);
        }
    }
    out
}

/// SIGKILLs every process whose command line mentions `needle` (the node's shims).
pub(super) fn kill_matching(needle: &str) {
    let Ok(entries) = fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if String::from_utf8_lossy(&cmdline).contains(needle) && pid != std::process::id() {
            let _ = crate::process::send_signal(pid, libc::SIGKILL);
        }
    }
}

/// Lazily unmounts everything mounted under `dir` (overlays, netns, secret tmpfs), deepest
/// first, so the directory can be removed.
pub(super) fn unmount_under(dir: &Path) {
    let Ok(mounts) = fs::read_to_string("/proc/self/mounts") else {
        return;
    };
    let prefix = dir.to_string_lossy().into_owned();
    let mut targets: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|t| t.starts_with(&prefix))
        .collect();
    targets.sort_by_key(|t| std::cmp::Reverse(t.len()));
    for target in targets {
        let _ = Command::new("umount").args(["-l", target]).output();
    }
}
