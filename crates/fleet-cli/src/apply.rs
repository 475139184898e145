//! `fleet apply`: the Bundles of directories, printed (`-o`) or written to a cluster (create,
//! update, prune), as Fleet's `fleet apply` and gitjob produce them.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use fleet_api::{BundleTarget, BundleTargetRestriction, CorrectDrift};
use fleet_bundle::read::{ApplyOptions, TargetsFile};
use fleet_bundle::repo::{ExplicitBundle, Scan, read_repo};
use fleet_runtime::WriteGate;
use fleet_runtime::bundle_store::BundleStore;
use serde::Deserialize;

#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// Write the Bundles to this file (`-` for standard output) instead of a cluster.
    #[arg(short = 'o', long = "output")]
    output: Option<String>,
    /// A Bundle (YAML or JSON) to apply as it is, from this file (`-` for standard input),
    /// named by the first argument, instead of reading directories.
    #[arg(short = 'f', long = "file")]
    file: Option<String>,
    /// Kubeconfig of the cluster to write to (without `-o`).
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    #[command(flatten)]
    bundles: BundleArgs,
}

/// How Bundles are built from directories (`fleet apply`'s and `fleet target`'s).
#[derive(Debug, clap::Args)]
pub struct BundleArgs {
    /// Namespace of the Bundles.
    #[arg(short = 'n', long, default_value = "fleet-local")]
    namespace: String,
    /// Labels for every Bundle (`key=value`, repeatable).
    #[arg(short = 'l', long = "label", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// A YAML file with `targets` and `targetRestrictions` (the GitRepo's targets).
    #[arg(long)]
    targets_file: Option<PathBuf>,
    /// Mark the Bundles paused.
    #[arg(long)]
    paused: bool,
    /// forceSyncGeneration for the Bundles.
    #[arg(long, default_value_t = 0)]
    sync_generation: i64,
    /// ServiceAccount the agent deploys as.
    #[arg(short = 'a', long)]
    service_account: Option<String>,
    /// Deploy every resource into this namespace.
    #[arg(long)]
    target_namespace: Option<String>,
    #[arg(long)]
    keep_resources: bool,
    #[arg(long)]
    delete_namespace: bool,
    /// Correct drift on deployed resources.
    #[arg(long)]
    correct_drift: bool,
    #[arg(long)]
    correct_drift_force: bool,
    #[arg(long)]
    correct_drift_keep_fail_history: bool,
    /// Compress every resource (`base64+gz`).
    #[arg(short = 'c', long)]
    compress: bool,
    /// The commit the Bundles come from (label `fleet.cattle.io/commit`); by default the
    /// HEAD of the git repository around the current directory, if there is one.
    #[arg(long, env = "COMMIT")]
    commit: Option<String>,
    /// Each bundle's options file, instead of `fleet.yaml` (its name goes into the bundle's).
    #[arg(short = 'b', long)]
    bundle_file: Option<String>,
    /// Driven scan: each path is one bundle, `DIR` or `DIR<sep>OPTIONS-FILE`, and nothing
    /// below it is discovered.
    #[arg(long)]
    driven_scan: bool,
    /// The separator of `--driven-scan` paths.
    #[arg(long, default_value = ":")]
    driven_scan_sep: String,
    /// The helm that fetches charts' dependencies into their Bundles (unless a bundle's
    /// `helm.disableDependencyUpdate`), as Fleet's `fleet apply` does.
    #[arg(long, env = "FLEET_HELM", default_value = "helm")]
    helm: PathBuf,
    /// Basic auth user for Helm repositories (with `--password-file`; sent only where
    /// `--helm-repo-url-regex` matches).
    #[arg(long, env = "HELM_USERNAME")]
    username: Option<String>,
    /// A file holding the basic auth password for Helm repositories.
    #[arg(long)]
    password_file: Option<PathBuf>,
    /// A PEM file of CA certificates trusted for Helm repositories.
    #[arg(long = "cacerts-file")]
    cacerts_file: Option<PathBuf>,
    /// A private key for charts in git repositories reached over ssh (known hosts from
    /// `FLEET_KNOWN_HOSTS`; without them any host key is accepted, as in Fleet).
    #[arg(long = "ssh-privatekey-file")]
    ssh_privatekey_file: Option<PathBuf>,
    /// A YAML file of chart credentials per bundle path or path pattern (Fleet's format:
    /// username, password, caBundle, sshPrivateKey, insecureSkipVerify, basicHTTP); the
    /// single-credential flags are then ignored.
    #[arg(long = "helm-credentials-by-path-file")]
    helm_credentials_by_path_file: Option<PathBuf>,
    /// Helm credentials are sent only to repositories whose URL this regex matches from the
    /// start (none: never, as in Fleet).
    #[arg(long = "helm-repo-url-regex")]
    helm_repo_url_regex: Option<String>,
    /// Skip TLS verification when downloading from Helm repositories.
    #[arg(long = "helm-insecure-skip-tls")]
    helm_insecure_skip_tls: bool,
    /// Plain HTTP to OCI registries when downloading charts.
    #[arg(long = "helm-basic-http")]
    helm_basic_http: bool,
    /// The largest file read, in bytes (checked before reading it).
    #[arg(long, default_value_t = fleet_bundle::files::SizeLimits::DEFAULT_FILE)]
    max_file_size: u64,
    /// The most bytes the files of one bundle may add up to.
    #[arg(long, default_value_t = fleet_bundle::files::SizeLimits::DEFAULT_BUNDLE)]
    max_bundle_size: u64,
    /// The bundle name prefix (a GitRepo's name).
    name: String,
    /// Directories to read, as Go globs (`apps/*`; default: the current directory).
    paths: Vec<String>,
}

pub fn parse_label(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("invalid label {text:?}: expected key=value"))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TargetsYaml {
    #[serde(default)]
    targets: Vec<BundleTarget>,
    #[serde(default)]
    target_restrictions: Vec<BundleTargetRestriction>,
}

pub fn options(args: &BundleArgs) -> anyhow::Result<ApplyOptions> {
    let mut labels: BTreeMap<String, String> = args.labels.iter().cloned().collect();
    let commit = args
        .commit
        .clone()
        .filter(|c| !c.is_empty())
        .or_else(head_commit);
    if let Some(commit) = commit {
        labels.insert(fleet_api::labels::COMMIT.to_owned(), commit);
    }
    let targets = match &args.targets_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let parsed: TargetsYaml = serde_saphyr::from_str(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            Some(TargetsFile {
                targets: parsed.targets,
                target_restrictions: parsed.target_restrictions,
            })
        }
        None => None,
    };
    Ok(ApplyOptions {
        labels,
        service_account: args.service_account.clone(),
        targets,
        target_namespace: args.target_namespace.clone(),
        paused: args.paused,
        sync_generation: args.sync_generation,
        keep_resources: args.keep_resources,
        delete_namespace: args.delete_namespace,
        correct_drift: args.correct_drift.then_some(CorrectDrift {
            enabled: true,
            force: args.correct_drift_force,
            keep_fail_history: args.correct_drift_keep_fail_history,
        }),
        compress: args.compress,
        allowed_target_namespace_selector: None,
        limits: fleet_bundle::files::SizeLimits {
            file: args.max_file_size,
            bundle: args.max_bundle_size,
        },
        // The directory read: `read_repo` sets it.
        root: None,
        helm: Some(args.helm.clone()),
        chart_access: chart_access(args)?,
        chart_access_by_path: chart_access_by_path(args)?,
    })
}

/// `--helm-credentials-by-path-file`: chart credentials per bundle path (Fleet's
/// `AuthByPath`; with it, the single-credential flags are ignored, as in Fleet).
fn chart_access_by_path(
    args: &BundleArgs,
) -> anyhow::Result<Option<fleet_bundle::chart_credentials::AccessByPath>> {
    let Some(path) = &args.helm_credentials_by_path_file else {
        return Ok(None);
    };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        // As Fleet: a file that does not exist is no credentials.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => bail!("reading {}: {e}", path.display()),
    };
    let by_path = fleet_bundle::chart_credentials::AccessByPath::from_yaml(
        &text,
        args.helm_repo_url_regex.as_deref(),
    )
    .with_context(|| path.display().to_string())?;
    Ok(Some(by_path))
}

/// How charts are downloaded into the Bundles: `--username` with `--password-file`,
/// `--cacerts-file`, `--helm-repo-url-regex`, `--helm-insecure-skip-tls`, `--helm-basic-http`
/// (Fleet's `addAuthToOpts`: a password file that does not exist is no password).
fn chart_access(args: &BundleArgs) -> anyhow::Result<fleet_bundle::remote_charts::ChartAccess> {
    let read = |path: &Option<PathBuf>| -> anyhow::Result<Option<Vec<u8>>> {
        match path {
            Some(path) => match std::fs::read(path) {
                Ok(bytes) => Ok(Some(bytes)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(anyhow::anyhow!("reading {}: {e}", path.display())),
            },
            None => Ok(None),
        }
    };
    let password = read(&args.password_file)?
        .map(|bytes| String::from_utf8_lossy(&bytes).trim_end().to_owned());
    let (username, password) = match (&args.username, password) {
        (Some(user), Some(password)) => (Some(user.clone()), Some(password)),
        _ => (None, None),
    };
    Ok(fleet_bundle::remote_charts::ChartAccess {
        access: fleet_api::HelmRepoAccess {
            username,
            password,
            ca_bundle: read(&args.cacerts_file)?,
            insecure_skip_tls_verify: args.helm_insecure_skip_tls,
        },
        url_regex: args.helm_repo_url_regex.clone(),
        plain_http: args.helm_basic_http,
        ssh_private_key: read(&args.ssh_privatekey_file)?,
        ssh_known_hosts: std::env::var("FLEET_KNOWN_HOSTS")
            .ok()
            .filter(|hosts| !hosts.is_empty())
            .map(String::into_bytes),
    })
}

pub fn apply(args: &ApplyArgs) -> anyhow::Result<()> {
    let bundles = match &args.file {
        Some(file) => vec![bundle_from_file(file, &args.bundles)?],
        None => read_bundles(&args.bundles)?,
    };
    // Nothing is written when anything failed above.
    match &args.output {
        Some(output) => write_yaml(output, &bundles),
        None => apply_to_cluster(args, bundles),
    }
}

/// The Bundle in `file` (`-`: standard input), named by the first argument, in the
/// namespace of `-n` (Fleet's `-f`).
fn bundle_from_file(file: &str, args: &BundleArgs) -> anyhow::Result<fleet_api::Bundle> {
    if !args.paths.is_empty() {
        bail!("with -f, the bundle name is the only argument");
    }
    let text = if file == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading the Bundle from stdin")?
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {file}"))?
    };
    let mut bundle: fleet_api::Bundle =
        serde_saphyr::from_str(&text).map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
    bundle.metadata.name = Some(args.name.clone());
    bundle.metadata.namespace = Some(args.namespace.clone());
    Ok(bundle)
}

/// The Bundles of the directories, as `fleet apply` builds them.
pub fn read_bundles(args: &BundleArgs) -> anyhow::Result<Vec<fleet_api::Bundle>> {
    let opts = options(args)?;
    if args.driven_scan {
        let root = Path::new(".");
        let scan = Scan::Explicit(driven(&args.paths, &args.driven_scan_sep));
        return Ok(read_repo(
            &args.name,
            &args.namespace,
            root,
            "",
            &scan,
            &opts,
        )?);
    }
    let mut bundles = Vec::new();
    for base in directories(&args.paths)? {
        let prefix = base.to_string_lossy();
        let scan = match &args.bundle_file {
            Some(file) => Scan::Explicit(with_options_file(&base, file)?),
            None => Scan::Paths(Vec::new()),
        };
        bundles.extend(read_repo(
            &args.name,
            &args.namespace,
            &base,
            &prefix,
            &scan,
            &opts,
        )?);
    }
    Ok(bundles)
}

/// The directories the path arguments name: each a Go glob (`apps/*`) of directories
/// relative to the current directory, as Fleet expands them; an absolute path as it is.
fn directories(paths: &[String]) -> anyhow::Result<Vec<PathBuf>> {
    if paths.is_empty() {
        return Ok(vec![PathBuf::from(".")]);
    }
    let mut dirs = Vec::new();
    for path in paths {
        if Path::new(path).is_absolute() && Path::new(path).is_dir() {
            dirs.push(PathBuf::from(path));
            continue;
        }
        let matched = fleet_bundle::glob::glob_dirs(Path::new("."), path)
            .map_err(|e| anyhow::anyhow!("invalid path glob {path}: {e}"))?;
        if matched.is_empty() {
            bail!("{path}: no such directory");
        }
        dirs.extend(matched.into_iter().map(PathBuf::from));
    }
    Ok(dirs)
}

/// `--driven-scan` paths (`DIR` or `DIR<sep>OPTIONS-FILE`) as explicit bundles.
fn driven(paths: &[String], separator: &str) -> Vec<ExplicitBundle> {
    paths
        .iter()
        .map(|path| match path.split_once(separator) {
            Some((base, options)) if !separator.is_empty() => ExplicitBundle {
                base: base.to_owned(),
                options: Some(options.to_owned()),
            },
            _ => ExplicitBundle {
                base: path.clone(),
                options: None,
            },
        })
        .collect()
}

/// The bundles discovered below `base`, each reading its options from `file` where it has
/// one (`-b`), as Fleet's reader does.
fn with_options_file(base: &Path, file: &str) -> anyhow::Result<Vec<ExplicitBundle>> {
    let found = fleet_bundle::discovery::discover(base, &[])
        .map_err(|e| anyhow::anyhow!("{}: {e}", base.display()))?;
    Ok(found
        .into_iter()
        .map(|dir| {
            let has_file = base.join(&dir.path).join(file).is_file();
            ExplicitBundle {
                options: has_file.then(|| file.to_owned()),
                base: dir.path,
            }
        })
        .collect())
}

/// The HEAD commit of the git repository around the current directory, if any (Fleet's
/// `fleet apply` labels Bundles with it).
fn head_commit() -> Option<String> {
    let output = std::process::Command::new("git")
        .args(["rev-parse", "--verify", "--quiet", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let commit = String::from_utf8(output.stdout).ok()?.trim().to_owned();
    (output.status.success() && !commit.is_empty()).then_some(commit)
}

pub fn write_yaml(output: &str, bundles: &[fleet_api::Bundle]) -> anyhow::Result<()> {
    let mut documents = String::new();
    for bundle in bundles {
        documents.push_str("---\n");
        documents.push_str(&serde_saphyr::to_string(bundle)?);
    }
    if output == "-" {
        std::io::stdout().lock().write_all(documents.as_bytes())?;
    } else {
        std::fs::write(output, documents).with_context(|| format!("writing {output}"))?;
    }
    Ok(())
}

/// Creates, updates and prunes the Bundles labelled with this name, as Fleet's `fleet apply`.
fn apply_to_cluster(args: &ApplyArgs, bundles: Vec<fleet_api::Bundle>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let client = kube_client(args.kubeconfig.as_deref()).await?;
        // A user's command: no Lease, no claim.
        let writer = WriteGate::unregistered("fleet-apply").unclaimed("fleet apply");
        let store = BundleStore::new(client, writer);
        let report = store
            .sync(&args.bundles.namespace, &args.bundles.name, None, bundles)
            .await?;
        for (verb, names) in [
            ("created", &report.created),
            ("updated", &report.updated),
            ("unchanged", &report.unchanged),
            ("deleted", &report.deleted),
        ] {
            for name in names {
                eprintln!("bundle.fleet.cattle.io/{name} {verb}");
            }
        }
        Ok(())
    })
}

pub async fn kube_client(kubeconfig: Option<&Path>) -> anyhow::Result<kube::Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                .await
                .with_context(|| format!("kubeconfig {}", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .context("no kubeconfig: pass --kubeconfig or set KUBECONFIG")?,
    };
    kube::Client::try_from(config).context("building the Kubernetes client")
}
