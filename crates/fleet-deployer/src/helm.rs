//! Installing and removing a bundle deployment's Helm release with the `helm` binary (private
//! `HELM_*_HOME` directories per call, the downstream kubeconfig, no shell).

use std::path::{Path, PathBuf};
use std::process::Command;

use fleet_api::values::merge_json;
use fleet_api::{BundleDeploymentOptions, HelmOptions, HelmRepoAccess, Values};
use fleet_bundle::files::Files;
use fleet_render::render::{
    Input, RenderError, Style, Tools, chart_args, helm_values, namespace, release_name, render,
    style, write_files,
};
use fleet_render::target::ClusterInfo;

use crate::chart::write_generated_chart;

/// The release label (Helm's `--labels`, on its history Secrets) naming the BundleDeployment
/// that deploys the release.
pub const OWNER_LABEL: &str = "fleet.cattle.io/bundle-deployment";

/// The release label (on each revision's history Secret) naming the deployment it installed,
/// as [`deployment_label`] of the BundleDeployment's `deploymentID`: a deploy whose status
/// could not be recorded (the upstream API server went away right after helm succeeded) is
/// recognised on the retry instead of being upgraded a second time.
pub const DEPLOYMENT_LABEL: &str = "fleet.cattle.io/deployment-id";

/// A label value for a `deploymentID` (which is too long and has a `:`): 32 hex digits of
/// its SHA-256.
pub fn deployment_label(deployment_id: &str) -> String {
    let mut digest = fleet_render::deployments::sha256_hex(deployment_id.as_bytes());
    digest.truncate(32);
    digest
}

/// `helm upgrade --install` flags for a bundle's `helm` options, as Fleet's agent sets them.
fn upgrade_flags(
    helm: &HelmOptions,
    bundle_deployment: &str,
    deployment_id: &str,
    local_chart: bool,
) -> Vec<String> {
    let mut flags = Vec::new();
    if helm.timeout_seconds > 0 {
        flags.push(format!("--timeout={}s", helm.timeout_seconds));
    }
    if helm.atomic {
        flags.push("--rollback-on-failure".to_owned());
    }
    if helm.wait_for_jobs {
        flags.extend(["--wait=watcher".to_owned(), "--wait-for-jobs".to_owned()]);
    }
    if helm.force {
        flags.push("--force-replace".to_owned());
    }
    if helm.skip_schema_validation {
        flags.push("--skip-schema-validation".to_owned());
    }
    // Fleet renders with DNS lookups unless `disableDNS`.
    if !helm.disable_dns {
        flags.push("--enable-dns".to_owned());
    }
    // A chart of the bundle gets its missing dependencies, unless `disableDependencyUpdate`.
    if local_chart && !helm.disable_dependency_update {
        flags.push("--dependency-update".to_owned());
    }
    flags.push(format!(
        "--labels={OWNER_LABEL}={bundle_deployment},{DEPLOYMENT_LABEL}={}",
        deployment_label(deployment_id)
    ));
    // Fleet always takes ownership on upgrade, so that existing objects can be adopted.
    flags.push("--take-ownership".to_owned());
    // Server-side apply, forcing conflicts: what git says wins over hand edits, on an
    // upgrade as when correcting drift.
    flags.extend([
        "--server-side=true".to_owned(),
        "--force-conflicts".to_owned(),
    ]);
    let history = if helm.max_history > 0 {
        helm.max_history
    } else {
        2
    };
    flags.push(format!("--history-max={history}"));
    flags
}

/// What the agent resolves for a deploy in the downstream cluster and upstream.
#[derive(Debug, Clone, Default)]
pub struct Resolved {
    /// `helm.valuesFrom`, merged over the bundle's values.
    pub values_from: Values,
    /// Credentials and TLS for the chart's Helm repository.
    pub repo: HelmRepoAccess,
    /// The user helm acts as (`system:serviceaccount:<ns>:<name>` for the bundle's
    /// `serviceAccount`); none: the agent's own identity.
    pub impersonate: Option<String>,
}

/// helm's TLS flags for a private repository (the CA file written into `work`).
fn repo_tls_args(
    cmd: &mut Command,
    access: &HelmRepoAccess,
    work: &Path,
) -> Result<(), std::io::Error> {
    if let Some(path) = repo_ca_file(access, work)? {
        cmd.arg("--ca-file").arg(path);
    }
    if access.insecure_skip_tls_verify {
        cmd.arg("--insecure-skip-tls-verify");
    }
    Ok(())
}

fn repo_ca_file(access: &HelmRepoAccess, work: &Path) -> Result<Option<PathBuf>, std::io::Error> {
    let Some(pem) = &access.ca_bundle else {
        return Ok(None);
    };
    let path = work.join("repo-ca.pem");
    std::fs::write(&path, pem)?;
    Ok(Some(path))
}

/// The name of the repository entry a deploy's private helm home holds.
const REPOSITORY: &str = "fleet-bundle";

/// A Helm release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub name: String,
    pub namespace: String,
}

impl std::fmt::Display for Release {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// What a deploy did.
#[derive(Debug, Clone)]
pub struct Deployed {
    pub release: Release,
}

/// Why a deploy failed (the agent reports it as `ErrApplied` with this message).
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error("helm {action} {release}: {message}")]
    Helm {
        action: &'static str,
        release: String,
        message: String,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Deploys bundle deployments into one cluster.
#[derive(Debug, Clone)]
pub struct Deployer {
    pub tools: Tools,
    /// The downstream cluster's kubeconfig (none: helm's in-cluster configuration).
    pub kubeconfig: Option<PathBuf>,
}

impl Deployer {
    /// Installs or upgrades the release of bundle deployment `name` with `options`, and what
    /// the agent resolved for it (`valuesFrom`, Helm repository access). Every object is
    /// server-side applied with forced conflicts, so running it again puts back fields
    /// someone changed by hand (drift correction).
    pub fn deploy(
        &self,
        name: &str,
        deployment_id: &str,
        options: &BundleDeploymentOptions,
        files: &Files,
        cluster: &ClusterInfo,
        resolved: &Resolved,
    ) -> Result<Deployed, DeployError> {
        let release = Release {
            name: release_name(name, options),
            namespace: namespace(options),
        };
        let input = Input {
            bundle: name,
            files,
            options,
            cluster,
        };
        let work = tempfile::Builder::new().prefix("fleet-deploy-").tempdir()?;
        let style = style(files, options)?;
        let mut cmd = self.helm(work.path());
        if let Some(user) = &resolved.impersonate {
            cmd.args(["--kube-as-user", user]);
        }
        cmd.args(["upgrade", "--install", &release.name]).args([
            "--namespace",
            &release.namespace,
            "--create-namespace",
        ]);
        let bundle_dir = work.path().join("bundle");
        match &style {
            Style::Kustomize(_) | Style::Raw => {
                let documents = render(input, &self.tools)?;
                let chart = work.path().join("chart");
                write_generated_chart(&chart, &release.name, &documents)?;
                cmd.arg(&chart);
            }
            Style::LocalChart(_) => {
                write_files(&bundle_dir, files)?;
                chart_args(&mut cmd, &style, &bundle_dir);
            }
            Style::RepoChart { .. } | Style::RemoteChart { .. } => {
                match self.hand_over_credentials(&style, &resolved.repo, work.path(), &release)? {
                    Some(named) => {
                        cmd.args(named);
                    }
                    None => chart_args(&mut cmd, &style, &bundle_dir),
                }
                repo_tls_args(&mut cmd, &resolved.repo, work.path())?;
            }
        }
        let values_path = work.path().join("values.json");
        let mut values = serde_json::Value::Object(match style {
            Style::Kustomize(_) | Style::Raw => serde_json::Map::new(),
            // Templated for this cluster by the controller already.
            _ => helm_values(&input),
        });
        merge_json(
            &mut values,
            serde_json::Value::Object(resolved.values_from.clone()),
        );
        std::fs::write(&values_path, values.to_string())?;
        cmd.arg("--values").arg(&values_path);
        let helm = options.helm.clone().unwrap_or_default();
        cmd.args(upgrade_flags(
            &helm,
            name,
            deployment_id,
            matches!(style, Style::LocalChart(_)),
        ));
        run(cmd, "upgrade --install", &release)?;
        Ok(Deployed { release })
    }

    /// The objects of a deployed release (`helm get manifest`).
    pub fn manifest(&self, release: &Release) -> Result<Vec<serde_json::Value>, DeployError> {
        let work = tempfile::Builder::new().prefix("fleet-deploy-").tempdir()?;
        let mut cmd = self.helm(work.path());
        cmd.args([
            "get",
            "manifest",
            &release.name,
            "--namespace",
            &release.namespace,
        ]);
        let output = cmd.output()?;
        if !output.status.success() {
            return Err(DeployError::Helm {
                action: "get manifest",
                release: release.to_string(),
                message: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            });
        }
        let documents: Vec<serde_json::Value> =
            serde_saphyr::from_multiple(&String::from_utf8_lossy(&output.stdout)).map_err(|e| {
                DeployError::Helm {
                    action: "get manifest",
                    release: release.to_string(),
                    message: e.to_string(),
                }
            })?;
        Ok(documents.into_iter().filter(|d| !d.is_null()).collect())
    }

    /// Removes a release and its objects (the agent skips this for `keepResources`).
    pub fn uninstall(&self, release: &Release) -> Result<(), DeployError> {
        let work = tempfile::Builder::new().prefix("fleet-deploy-").tempdir()?;
        let mut cmd = self.helm(work.path());
        cmd.args([
            "uninstall",
            &release.name,
            "--namespace",
            &release.namespace,
            "--ignore-not-found",
        ]);
        run(cmd, "uninstall", release)
    }

    /// Gives helm a private repository's username and password through files of this
    /// deploy's private helm home (a 0700 temporary directory), never its command line, which
    /// every process of the node can read in `/proc/<pid>/cmdline`: a repository entry in its
    /// `repositories.yaml` (then `helm repo update` and the chart as `fleet-bundle/<chart>`,
    /// returned), or a `helm registry login` with the password on standard input for OCI.
    /// A chart by plain https URL with credentials has no such file in helm: it is refused.
    fn hand_over_credentials(
        &self,
        style: &Style,
        access: &HelmRepoAccess,
        work: &Path,
        release: &Release,
    ) -> Result<Option<Vec<String>>, DeployError> {
        let (Some(username), Some(password)) = (&access.username, &access.password) else {
            return Ok(None);
        };
        match style {
            Style::RepoChart {
                repo,
                chart,
                version,
            } => {
                let config = work.join("helm").join("config");
                std::fs::create_dir_all(&config)?;
                let entry = serde_json::json!({
                    "name": REPOSITORY,
                    "url": repo,
                    "username": username,
                    "password": password,
                    "caFile": repo_ca_file(access, work)?.map(|p| p.display().to_string()).unwrap_or_default(),
                    "insecure_skip_tls_verify": access.insecure_skip_tls_verify,
                });
                let file = serde_json::json!({"apiVersion": "", "repositories": [entry]});
                write_private(&config.join("repositories.yaml"), &file.to_string())?;
                let mut update = self.helm(work);
                update.args(["repo", "update", REPOSITORY]);
                run(update, "repo update", release)?;
                let mut args = vec![format!("{REPOSITORY}/{chart}")];
                if let Some(version) = version {
                    args.extend(["--version".to_owned(), version.clone()]);
                }
                Ok(Some(args))
            }
            Style::RemoteChart { url, .. } if url.starts_with("oci://") => {
                let host = url
                    .trim_start_matches("oci://")
                    .split('/')
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                let mut login = self.helm(work);
                login.args(["registry", "login", &host, "--username", username, "--password-stdin"]);
                if let Some(path) = repo_ca_file(access, work)? {
                    login.arg("--ca-file").arg(path);
                }
                if access.insecure_skip_tls_verify {
                    login.arg("--insecure");
                }
                run_with_stdin(login, password.as_bytes(), "registry login", release)?;
                Ok(None)
            }
            _ => Err(DeployError::Helm {
                action: "pull",
                release: release.to_string(),
                message: "credentials for a chart by https URL are not supported: use helm.repo with helm.chart, or an oci:// chart".to_owned(),
            }),
        }
    }

    fn helm(&self, work: &Path) -> Command {
        let mut cmd = fleet_bundle::helm::command(&self.tools.helm, work);
        if let Some(kubeconfig) = &self.kubeconfig {
            cmd.arg("--kubeconfig").arg(kubeconfig);
        }
        cmd
    }
}

/// Writes a file only its owner may read.
fn write_private(path: &Path, content: &str) -> Result<(), std::io::Error> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(content.as_bytes())
}

/// Runs helm with `input` on its standard input (a password, never an argument).
fn run_with_stdin(
    mut cmd: Command,
    input: &[u8],
    action: &'static str,
    release: &Release,
) -> Result<(), DeployError> {
    use std::io::Write as _;
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input)?;
    }
    succeeded(child.wait_with_output()?, action, release)
}

fn run(mut cmd: Command, action: &'static str, release: &Release) -> Result<(), DeployError> {
    succeeded(cmd.output()?, action, release)
}

/// A finished helm run: its stderr is the error message when it failed.
fn succeeded(
    output: std::process::Output,
    action: &'static str,
    release: &Release,
) -> Result<(), DeployError> {
    if output.status.success() {
        return Ok(());
    }
    Err(DeployError::Helm {
        action,
        release: release.to_string(),
        message: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fleets_helm_options_become_helm_flags() {
        let defaults = upgrade_flags(&HelmOptions::default(), "bd", "s-1:o", true);
        assert_eq!(
            defaults,
            [
                "--enable-dns",
                "--dependency-update",
                "--labels=fleet.cattle.io/bundle-deployment=bd,fleet.cattle.io/deployment-id=952dee6b097a905f44d231e64e8715d9",
                "--take-ownership",
                "--server-side=true",
                "--force-conflicts",
                "--history-max=2",
            ]
        );
        let helm: HelmOptions = serde_json::from_value(serde_json::json!({
            "timeoutSeconds": 30, "atomic": true, "waitForJobs": true, "force": true,
            "skipSchemaValidation": true, "disableDNS": true, "disableDependencyUpdate": true,
            "maxHistory": 5,
        }))
        .expect("options");
        let flags = upgrade_flags(&helm, "bd", "s-1:o", true);
        for flag in [
            "--timeout=30s",
            "--rollback-on-failure",
            "--wait=watcher",
            "--wait-for-jobs",
            "--force-replace",
            "--skip-schema-validation",
            "--history-max=5",
        ] {
            assert!(flags.iter().any(|f| f == flag), "{flag} in {flags:?}");
        }
        assert!(
            !flags
                .iter()
                .any(|f| f == "--enable-dns" || f == "--dependency-update")
        );
    }
}
