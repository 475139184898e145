//! Locating (and, where Go is available, building) the pinned tool binaries.
//!
//! Each binary is looked up, in order (ARCHITECTURE.md section 3):
//! 1. `$KUBEBUILDER_ASSETS/<binary>`, the controller-runtime envtest convention;
//! 2. the per-version cache directory `<cache>/bin/<module>-<version>/<binary>`, outside the clone;
//! 3. built once with `go build` from the pinned Go module in `e2e/tools/<module>/go.mod`, into
//!    that cache directory (under a file lock, so parallel test binaries build it only once).
//!
//! The versions are read from those `go.mod` files, which are the single source of truth.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Error;

/// A pinned Go module that produces one or more binaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolModule {
    /// `kube-apiserver`, `kube-controller-manager` and the node binaries (`kubelet`,
    /// `kube-scheduler`, `kube-proxy`) from `k8s.io/kubernetes`.
    Kubernetes,
    /// `etcd` from `go.etcd.io/etcd/server/v3`.
    Etcd,
    /// `helm` from `helm.sh/helm/v4`.
    Helm,
    /// `kustomize` from `sigs.k8s.io/kustomize/kustomize/v5`.
    Kustomize,
    /// `client-go-elector`: a small program of ours on client-go's leader election, to test
    /// that fleet-election and client-go respect each other on one Lease.
    ClientGoElector,
    /// `registry`, the CNCF distribution OCI registry (Helm charts as OCI artifacts).
    Registry,
    /// `containerd`, its runc shim and `ctr`: the container runtime of the test nodes.
    Containerd,
    /// `promtool`, to check the chart's alerting rules.
    Promtool,
}

/// A binary the tests and the demo need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    Etcd,
    KubeApiserver,
    KubeControllerManager,
    Helm,
    Kustomize,
    ClientGoElector,
    OciRegistry,
    Kubelet,
    KubeScheduler,
    KubeProxy,
    Containerd,
    ContainerdShim,
    Ctr,
    Promtool,
}

/// The minimum etcd that Kubernetes >= 1.31 works with (consistent watches need
/// `RequestWatchProgress`, added in 3.5.13).
pub const MIN_ETCD: (u64, u64, u64) = (3, 5, 13);

impl Tool {
    /// Every pinned binary; the node's come last ([`Tool::NODE`]).
    pub const ALL: [Tool; 14] = [
        Tool::Etcd,
        Tool::KubeApiserver,
        Tool::KubeControllerManager,
        Tool::Helm,
        Tool::Kustomize,
        Tool::ClientGoElector,
        Tool::OciRegistry,
        Tool::Promtool,
        Tool::Kubelet,
        Tool::KubeScheduler,
        Tool::KubeProxy,
        Tool::Containerd,
        Tool::ContainerdShim,
        Tool::Ctr,
    ];

    /// The binaries of a node (kubelet, its runtime) and of the plane's node-facing services.
    pub const NODE: &[Tool] = Tool::ALL.split_at(8).1;

    /// The file name of the binary.
    pub fn binary_name(self) -> &'static str {
        match self {
            Tool::Etcd => "etcd",
            Tool::KubeApiserver => "kube-apiserver",
            Tool::KubeControllerManager => "kube-controller-manager",
            Tool::Helm => "helm",
            Tool::Kustomize => "kustomize",
            Tool::ClientGoElector => "client-go-elector",
            Tool::OciRegistry => "registry",
            Tool::Kubelet => "kubelet",
            Tool::KubeScheduler => "kube-scheduler",
            Tool::KubeProxy => "kube-proxy",
            Tool::Containerd => "containerd",
            Tool::ContainerdShim => "containerd-shim-runc-v2",
            Tool::Ctr => "ctr",
            Tool::Promtool => "promtool",
        }
    }

    /// The Go module that builds this binary.
    pub fn module(self) -> ToolModule {
        match self {
            Tool::Etcd => ToolModule::Etcd,
            Tool::KubeApiserver
            | Tool::KubeControllerManager
            | Tool::Kubelet
            | Tool::KubeScheduler
            | Tool::KubeProxy => ToolModule::Kubernetes,
            Tool::Containerd | Tool::ContainerdShim | Tool::Ctr => ToolModule::Containerd,
            Tool::Promtool => ToolModule::Promtool,
            Tool::Helm => ToolModule::Helm,
            Tool::Kustomize => ToolModule::Kustomize,
            Tool::ClientGoElector => ToolModule::ClientGoElector,
            Tool::OciRegistry => ToolModule::Registry,
        }
    }

    /// The Go package path that `go build` compiles into this binary.
    fn go_package(self) -> &'static str {
        match self {
            Tool::Etcd => "go.etcd.io/etcd/server/v3",
            Tool::KubeApiserver => "k8s.io/kubernetes/cmd/kube-apiserver",
            Tool::KubeControllerManager => "k8s.io/kubernetes/cmd/kube-controller-manager",
            Tool::Helm => "helm.sh/helm/v4/cmd/helm",
            Tool::Kustomize => "sigs.k8s.io/kustomize/kustomize/v5",
            Tool::ClientGoElector => "fleet-rs/tools/client-go-elector",
            Tool::OciRegistry => "github.com/distribution/distribution/v3/cmd/registry",
            Tool::Kubelet => "k8s.io/kubernetes/cmd/kubelet",
            Tool::KubeScheduler => "k8s.io/kubernetes/cmd/kube-scheduler",
            Tool::KubeProxy => "k8s.io/kubernetes/cmd/kube-proxy",
            Tool::Containerd => "github.com/containerd/containerd/v2/cmd/containerd",
            Tool::ContainerdShim => {
                "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"
            }
            Tool::Ctr => "github.com/containerd/containerd/v2/cmd/ctr",
            Tool::Promtool => "github.com/prometheus/prometheus/cmd/promtool",
        }
    }

    /// The pinned version (from the module's `go.mod`).
    pub fn version(self) -> Result<String, Error> {
        self.module().version()
    }
}

impl ToolModule {
    /// The directory name under `e2e/tools/` and the prefix of the cache directory.
    pub fn dir_name(self) -> &'static str {
        match self {
            ToolModule::Kubernetes => "kubernetes",
            ToolModule::Etcd => "etcd",
            ToolModule::Helm => "helm",
            ToolModule::Kustomize => "kustomize",
            ToolModule::ClientGoElector => "client-go-elector",
            ToolModule::Registry => "registry",
            ToolModule::Containerd => "containerd",
            ToolModule::Promtool => "promtool",
        }
    }

    fn upstream_module(self) -> &'static str {
        match self {
            ToolModule::Kubernetes => "k8s.io/kubernetes",
            ToolModule::Etcd => "go.etcd.io/etcd/server/v3",
            ToolModule::Helm => "helm.sh/helm/v4",
            ToolModule::Kustomize => "sigs.k8s.io/kustomize/kustomize/v5",
            ToolModule::ClientGoElector => "k8s.io/client-go",
            ToolModule::Registry => "github.com/distribution/distribution/v3",
            ToolModule::Containerd => "github.com/containerd/containerd/v2",
            ToolModule::Promtool => "github.com/prometheus/prometheus",
        }
    }

    fn go_mod(self) -> &'static str {
        match self {
            ToolModule::Kubernetes => include_str!("../../../e2e/tools/kubernetes/go.mod"),
            ToolModule::Etcd => include_str!("../../../e2e/tools/etcd/go.mod"),
            ToolModule::Helm => include_str!("../../../e2e/tools/helm/go.mod"),
            ToolModule::Kustomize => include_str!("../../../e2e/tools/kustomize/go.mod"),
            ToolModule::ClientGoElector => {
                include_str!("../../../e2e/tools/client-go-elector/go.mod")
            }
            ToolModule::Registry => include_str!("../../../e2e/tools/registry/go.mod"),
            ToolModule::Containerd => include_str!("../../../e2e/tools/containerd/go.mod"),
            ToolModule::Promtool => include_str!("../../../e2e/tools/promtool/go.mod"),
        }
    }

    fn tools(self) -> Vec<Tool> {
        Tool::ALL
            .into_iter()
            .filter(|t| t.module() == self)
            .collect()
    }

    /// The version of the upstream module pinned in `go.mod`; for a program of ours, also a
    /// hash of its source, so that an edit builds a new binary.
    pub fn version(self) -> Result<String, Error> {
        let pinned =
            pinned_version(self.go_mod(), self.upstream_module()).ok_or_else(|| Error::Config {
                message: format!(
                    "e2e/tools/{}/go.mod does not require {}",
                    self.dir_name(),
                    self.upstream_module()
                ),
            })?;
        Ok(match self {
            ToolModule::ClientGoElector => format!(
                "{pinned}-{:08x}",
                fnv1a(include_str!("../../../e2e/tools/client-go-elector/main.go"))
            ),
            _ => pinned,
        })
    }

    /// `-ldflags` that stamp the release version into the binary (else `--version` prints a
    /// development version, and Kubernetes clients see `v0.0.0-master`).
    fn ldflags(self, version: &str) -> String {
        let mut flags = String::from("-s -w");
        match self {
            ToolModule::Kubernetes => {
                let minor = version.split('.').nth(1).unwrap_or_default();
                for pkg in [
                    "k8s.io/component-base/version",
                    "k8s.io/client-go/pkg/version",
                ] {
                    flags.push_str(&format!(
                        " -X {pkg}.gitVersion={version} -X {pkg}.gitMajor=1 -X {pkg}.gitMinor={minor}"
                    ));
                }
            }
            ToolModule::Helm => {
                flags.push_str(&format!(
                    " -X helm.sh/helm/v4/internal/version.version={version}"
                ));
            }
            ToolModule::Containerd => {
                flags.push_str(&format!(
                    " -X github.com/containerd/containerd/v2/version.Version={version}"
                ));
            }
            ToolModule::Etcd
            | ToolModule::Kustomize
            | ToolModule::ClientGoElector
            | ToolModule::Registry
            | ToolModule::Promtool => {}
        }
        flags
    }

    /// Go build tags: containerd without the snapshotters that need cgo or kernel features this
    /// machine kind lacks (overlayfs and native remain).
    fn build_tags(self) -> &'static str {
        match self {
            ToolModule::Containerd => "no_btrfs no_devmapper no_zfs no_aufs",
            _ => "",
        }
    }
}

/// 32-bit FNV-1a: a stable content hash for cache keys (not for security).
fn fnv1a(text: &str) -> u32 {
    text.bytes().fold(0x811c_9dc5, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    })
}

/// Finds `module version` in a `go.mod` (single-line or block `require`).
fn pinned_version(go_mod: &str, module: &str) -> Option<String> {
    go_mod.lines().find_map(|line| {
        let line = line.trim().trim_start_matches("require").trim();
        let mut words = line.split_whitespace();
        (words.next() == Some(module))
            .then(|| words.next().map(str::to_owned))
            .flatten()
    })
}

/// The cache root: `$FLEET_RS_CACHE_DIR`, else `$XDG_CACHE_HOME/fleet-rs`, else
/// `$HOME/.cache/fleet-rs`. It lives outside the clone so that fresh clones reuse it.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("FLEET_RS_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("fleet-rs");
    }
    let home = std::env::var_os("HOME").map_or_else(std::env::temp_dir, PathBuf::from);
    home.join(".cache").join("fleet-rs")
}

/// The directory holding the binaries of one pinned module version.
pub fn module_bin_dir(module: ToolModule) -> Result<PathBuf, Error> {
    Ok(cache_dir()
        .join("bin")
        .join(format!("{}-{}", module.dir_name(), module.version()?)))
}

/// The repository's `e2e/tools` directory (the pinned Go modules).
pub fn tools_source_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../e2e/tools")
}

/// Where a binary would be found without building it, if anywhere.
pub fn find(tool: Tool) -> Result<Option<PathBuf>, Error> {
    if let Some(assets) = std::env::var_os("KUBEBUILDER_ASSETS") {
        let candidate = PathBuf::from(assets).join(tool.binary_name());
        if candidate.is_file() {
            return Ok(Some(candidate));
        }
    }
    let cached = module_bin_dir(tool.module())?.join(tool.binary_name());
    Ok(cached.is_file().then_some(cached))
}

/// Locates a binary, building its pinned module with Go if it is not found; checks etcd's
/// version. This is what tests call: the first caller on a machine pays the build.
pub fn ensure(tool: Tool) -> Result<PathBuf, Error> {
    let path = match find(tool)? {
        Some(path) => path,
        None => {
            build_module(tool.module())?;
            find(tool)?.ok_or_else(|| missing(tool, "the build did not produce it"))?
        }
    };
    if tool == Tool::Etcd {
        check_etcd_version(&path)?;
    }
    Ok(path)
}

fn missing(tool: Tool, why: &str) -> Error {
    let module = tool.module();
    let version = module.version().unwrap_or_else(|_| "?".into());
    Error::BinaryMissing {
        binary: tool.binary_name(),
        message: format!(
            "{why}. Provide it in one of three ways:\n  \
             1. set KUBEBUILDER_ASSETS to a directory that contains `{bin}` (the envtest convention);\n  \
             2. put `{bin}` into {cache}/ (the per-version cache);\n  \
             3. install Go (>= 1.26) and run `cargo xtask tools`, which builds it from \
             e2e/tools/{dir}/go.mod ({module} {version}).",
            bin = tool.binary_name(),
            cache = cache_dir()
                .join("bin")
                .join(format!("{}-{version}", module.dir_name()))
                .display(),
            dir = module.dir_name(),
            module = module.upstream_module(),
        ),
    }
}

/// Builds every binary of a pinned module into its cache directory, once per machine.
pub fn build_module(module: ToolModule) -> Result<PathBuf, Error> {
    let version = module.version()?;
    let target = module_bin_dir(module)?;
    let tools = module.tools();
    let bin_root = cache_dir().join("bin");
    fs::create_dir_all(&bin_root).map_err(|e| Error::io(&bin_root, e))?;

    // One builder at a time per module version; the others wait and then find the result.
    let lock_path = bin_root.join(format!(".{}-{version}.lock", module.dir_name()));
    let lock = fs::File::create(&lock_path).map_err(|e| Error::io(&lock_path, e))?;
    lock.lock().map_err(|e| Error::io(&lock_path, e))?;
    if tools.iter().all(|t| target.join(t.binary_name()).is_file()) {
        return Ok(target);
    }

    let go = which("go").ok_or_else(|| {
        missing(
            tools[0],
            &format!(
                "{} was not found and `go` is not on PATH",
                tools[0].binary_name()
            ),
        )
    })?;
    let source = tools_source_dir().join(module.dir_name());
    let staging = bin_root.join(format!(
        ".{}-{version}.build-{}",
        module.dir_name(),
        std::process::id()
    ));
    fs::create_dir_all(&staging).map_err(|e| Error::io(&staging, e))?;
    // Binaries of this version built before (say, the plane's, before the node's were added)
    // are kept, not rebuilt.
    let mut pending = Vec::new();
    for tool in &tools {
        let built = target.join(tool.binary_name());
        if built.is_file() {
            fs::copy(&built, staging.join(tool.binary_name())).map_err(|e| Error::io(&built, e))?;
        } else {
            pending.push(*tool);
        }
    }

    let started = std::time::Instant::now();
    tracing::info!(module = module.dir_name(), %version, "building pinned binaries with go (once per machine)");
    eprintln!(
        "fleet-testkit: building {} {version} with go into {} (once per machine; several minutes)",
        module.upstream_module(),
        target.display()
    );
    for tool in &pending {
        if let Err(error) = go_build(&go, module, &version, &source, *tool, &staging) {
            let _ = fs::remove_dir_all(&staging);
            return Err(error);
        }
    }
    if target.exists() {
        fs::remove_dir_all(&target).map_err(|e| Error::io(&target, e))?;
    }
    fs::rename(&staging, &target).map_err(|e| Error::io(&target, e))?;
    eprintln!(
        "fleet-testkit: built {} {version} in {:.0?}",
        module.upstream_module(),
        started.elapsed()
    );
    Ok(target)
}

/// `go build`s `tool` of `module` (at `version`, sources in `source`) into `staging`.
fn go_build(
    go: &Path,
    module: ToolModule,
    version: &str,
    source: &Path,
    tool: Tool,
    staging: &Path,
) -> Result<(), Error> {
    let mut cmd = Command::new(go);
    cmd.current_dir(source)
        .args([
            "build",
            "-trimpath",
            "-tags",
            module.build_tags(),
            "-ldflags",
            &module.ldflags(version),
            "-o",
        ])
        .arg(staging.join(tool.binary_name()))
        .arg(tool.go_package())
        .env("CGO_ENABLED", "0")
        .env("GOFLAGS", "-buildvcs=false -mod=readonly");
    if go_needs_nojsonv2(go) {
        // Go >= 1.27 enables encoding/json/v2 by default; Kubernetes 1.36 then serves broken
        // OpenAPI (CONTROL-PLANE.md, "Go version trap").
        cmd.env("GOEXPERIMENT", "nojsonv2");
    }
    let output = cmd.output().map_err(|e| Error::io(go, e))?;
    if output.status.success() {
        return Ok(());
    }
    Err(Error::Build {
        binary: tool.binary_name(),
        message: crate::process::tail(&String::from_utf8_lossy(&output.stderr), 30),
    })
}

fn go_needs_nojsonv2(go: &Path) -> bool {
    let Ok(out) = Command::new(go).args(["env", "GOVERSION"]).output() else {
        return false;
    };
    let version = String::from_utf8_lossy(&out.stdout);
    let minor = version
        .trim()
        .trim_start_matches("go")
        .split('.')
        .nth(1)
        .and_then(|m| m.parse::<u32>().ok());
    minor.is_some_and(|m| m >= 27)
}

/// Refuses an etcd older than [`MIN_ETCD`] (Debian's 3.4 starts, then consistent watches fail).
pub fn check_etcd_version(etcd: &Path) -> Result<(), Error> {
    let out = Command::new(etcd)
        .arg("--version")
        .output()
        .map_err(|e| Error::io(etcd, e))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = parse_etcd_version(&text).ok_or_else(|| Error::EtcdVersion {
        path: etcd.to_owned(),
        found: text.lines().next().unwrap_or_default().to_owned(),
    })?;
    if version < MIN_ETCD {
        return Err(Error::EtcdVersion {
            path: etcd.to_owned(),
            found: format!("{}.{}.{}", version.0, version.1, version.2),
        });
    }
    Ok(())
}

fn parse_etcd_version(text: &str) -> Option<(u64, u64, u64)> {
    let line = text.lines().find(|l| l.starts_with("etcd Version:"))?;
    let mut parts = line
        .trim_start_matches("etcd Version:")
        .trim()
        .split(['.', '-']);
    Some((
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
    ))
}

/// A file of the pinned `k8s.io/kubernetes` module's source (e.g. `build/pause/linux/pause.c`),
/// from Go's module cache, downloaded there first when missing.
pub fn kubernetes_source_file(version: &str, relative: &str) -> Result<PathBuf, Error> {
    let go = which("go").ok_or_else(|| Error::Config {
        message: format!("`go` is not on PATH: needed for k8s.io/kubernetes' {relative}"),
    })?;
    let output = Command::new(&go)
        .args(["env", "GOMODCACHE"])
        .output()
        .map_err(|e| Error::io(&go, e))?;
    let cache = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    let file = cache
        .join(format!("k8s.io/kubernetes@{version}"))
        .join(relative);
    if !file.is_file() {
        crate::process::run(
            "go mod download k8s.io/kubernetes",
            Command::new(&go)
                .current_dir(tools_source_dir().join("kubernetes"))
                .args(["mod", "download", "k8s.io/kubernetes"]),
        )?;
    }
    if file.is_file() {
        Ok(file)
    } else {
        Err(Error::Config {
            message: format!("{} is not in the module cache", file.display()),
        })
    }
}

/// Looks a program up on `PATH`.
pub fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|candidate| candidate.is_file())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pinned_versions_from_go_mod() {
        let go_mod = "module x\n\nrequire (\n\tk8s.io/kubernetes v1.36.3 // indirect\n)\nrequire helm.sh/helm/v4 v4.3.1\n";
        assert_eq!(
            pinned_version(go_mod, "k8s.io/kubernetes").as_deref(),
            Some("v1.36.3")
        );
        assert_eq!(
            pinned_version(go_mod, "helm.sh/helm/v4").as_deref(),
            Some("v4.3.1")
        );
        assert_eq!(pinned_version(go_mod, "go.etcd.io/etcd/server/v3"), None);
    }

    #[test]
    fn every_module_pins_a_version() {
        for module in [
            ToolModule::Kubernetes,
            ToolModule::Etcd,
            ToolModule::Helm,
            ToolModule::Kustomize,
            ToolModule::ClientGoElector,
            ToolModule::Registry,
            ToolModule::Containerd,
            ToolModule::Promtool,
        ] {
            let version = module.version().expect("pinned");
            assert!(version.starts_with('v'), "{module:?}: {version}");
        }
    }

    #[test]
    fn parses_etcd_versions_and_orders_them() {
        let v = parse_etcd_version("etcd Version: 3.6.16\nGit SHA: abc\nGo Version: go1.26\n");
        assert_eq!(v, Some((3, 6, 16)));
        let old = parse_etcd_version("etcd Version: 3.4.23\n").expect("parses");
        assert!(old < MIN_ETCD);
        assert!(parse_etcd_version("etcd Version: 3.5.13\n").expect("parses") >= MIN_ETCD);
        assert_eq!(parse_etcd_version("garbage"), None);
    }

    #[test]
    fn kubernetes_ldflags_stamp_both_version_packages() {
        let flags = ToolModule::Kubernetes.ldflags("v1.36.3");
        assert!(flags.contains("k8s.io/component-base/version.gitVersion=v1.36.3"));
        assert!(flags.contains("k8s.io/client-go/pkg/version.gitMinor=36"));
    }
}
