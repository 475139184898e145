//! Charts from Helm repositories and URLs downloaded when the Bundle is built and embedded in
//! it, as Fleet's reader does (`addRemoteCharts`): each `helm` block (the bundle's and its
//! target customizations') with a `repo`, an `oci://` or an `https://` chart gets `helm pull`,
//! and the chart's files go into the Bundle below
//! [`embedded_chart_dir`], where the agent finds them:
//! downstream clusters need no access to the repository.
//!
//! Only when the caller gives a helm binary (`ApplyOptions::helm`); without one, the agent
//! downloads the chart when it installs it. A chart that can only be a local path must be
//! in the bundle ([`check_local`]).

use base64::Engine as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use fleet_api::naming::embedded_chart_dir;
use fleet_api::{BundleSpec, HelmOptions, HelmRepoAccess};

use crate::files::Files;

/// Why a chart could not be downloaded.
#[derive(Debug, thiserror::Error)]
#[error("downloading chart {chart} (repo {repo:?}, version {version:?}): {message}")]
pub struct ChartDownloadError {
    pub chart: String,
    pub repo: String,
    pub version: String,
    pub message: String,
}

/// A chart to download: (chart, repo, version), as the `helm` block says.
fn remote(helm: &HelmOptions) -> Option<(String, String, String)> {
    let chart = helm.chart.clone().filter(|c| !c.is_empty())?;
    let repo = helm.repo.clone().unwrap_or_default();
    let url = chart.starts_with("oci://")
        || chart.starts_with("https://")
        || chart.starts_with("http://")
        || GitChart::parse(&chart).is_some();
    (!repo.is_empty() || url).then(|| (chart, repo, helm.version.clone().unwrap_or_default()))
}

/// The remote charts of `spec` (the bundle's and its targets'), without repeats.
pub fn charts(spec: &BundleSpec) -> Vec<(String, String, String)> {
    let mut found = Vec::new();
    let helms = std::iter::once(spec.options.helm.as_ref())
        .chain(spec.targets.iter().map(|t| t.options.helm.as_ref()));
    for helm in helms.flatten() {
        if let Some(chart) = remote(helm)
            && !found.contains(&chart)
        {
            found.push(chart);
        }
    }
    found
}

/// Refuses a `helm.chart` (of the bundle or a target customization) that can only be a
/// local path, when that path does not exist: with no `helm.repo` and no URL scheme, Fleet's
/// reader looks for it in the bundle directory and fails otherwise; refused here, when the
/// Bundle is built, and not later on every cluster.
pub fn check_local(spec: &BundleSpec, dir: &Path) -> Result<(), MissingChart> {
    let helms = std::iter::once(("helm.chart".to_owned(), spec.options.helm.as_ref())).chain(
        spec.targets.iter().map(|target| {
            let name = target.name.as_deref().unwrap_or_default();
            (
                format!("targetCustomizations[{name}].helm.chart"),
                target.options.helm.as_ref(),
            )
        }),
    );
    for (field, helm) in helms {
        let Some(helm) = helm else { continue };
        let chart = helm.chart.as_deref().unwrap_or_default();
        let repo = helm.repo.as_deref().unwrap_or_default();
        if chart.is_empty() || !repo.is_empty() || is_chart_url(chart) {
            continue;
        }
        let path: PathBuf = dir
            .join(chart)
            .components()
            .filter(|c| !matches!(c, std::path::Component::CurDir))
            .collect();
        if !path.exists() {
            return Err(MissingChart {
                field,
                chart: chart.to_owned(),
                path,
            });
        }
    }
    Ok(())
}

/// Whether `chart` is a URL Fleet downloads (`https://`, `oci://`, go-getter `git::` and
/// `github.com/...` forms) rather than a path.
fn is_chart_url(chart: &str) -> bool {
    chart.contains("://")
        || chart.starts_with("git::")
        || chart.starts_with("github.com/")
        || chart.starts_with("gitlab.com/")
        || chart.starts_with("bitbucket.org/")
}

/// `helm.chart` names a local chart that is not there (and no `helm.repo`, no URL).
#[derive(Debug, thiserror::Error)]
#[error(
    "{field}: chart {chart:?} not found at {} (a local chart directory or archive; or set helm.repo, or give a chart URL)",
    path.display()
)]
pub struct MissingChart {
    pub field: String,
    pub chart: String,
    pub path: PathBuf,
}

/// How charts are downloaded: the Helm repository access (credentials used only for URLs
/// `url_regex` matches, as Fleet's `helmRepoURLRegex`; CA and TLS settings always), plain
/// HTTP for OCI registries, and the SSH key (with known hosts; without them any host key is
/// accepted, as in Fleet) for charts in git repositories reached over ssh.
#[derive(Clone, Default)]
pub struct ChartAccess {
    pub access: HelmRepoAccess,
    pub url_regex: Option<String>,
    pub plain_http: bool,
    pub ssh_private_key: Option<Vec<u8>>,
    pub ssh_known_hosts: Option<Vec<u8>>,
}

impl std::fmt::Debug for ChartAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChartAccess")
            .field("access", &self.access)
            .field("url_regex", &self.url_regex)
            .field("plain_http", &self.plain_http)
            .field(
                "ssh_private_key",
                &self.ssh_private_key.as_ref().map(|_| "<redacted>"),
            )
            .field("ssh_known_hosts", &self.ssh_known_hosts.is_some())
            .finish()
    }
}

/// Whether credentials go with a request for `repo` (or `chart`, without a repo): only when
/// `regex` is set and matches from the start of the URL (Fleet's `shouldAddAuthToRequest`).
pub fn credentials_apply(regex: Option<&str>, repo: &str, chart: &str) -> Result<bool, String> {
    let Some(regex) = regex.filter(|r| !r.is_empty()) else {
        return Ok(false);
    };
    regex::Regex::new(regex).map_err(|e| format!("helmRepoURLRegex {regex:?}: {e}"))?;
    let anchored = regex::Regex::new(&format!("^(?:{regex})"))
        .map_err(|e| format!("helmRepoURLRegex {regex:?}: {e}"))?;
    Ok(anchored.is_match(if repo.is_empty() { chart } else { repo }))
}

/// Downloads every remote chart of `spec` with `helm` into `files`.
pub fn embed(
    spec: &BundleSpec,
    files: &mut Files,
    helm: &Path,
    access: &ChartAccess,
) -> Result<(), ChartDownloadError> {
    for (chart, repo, version) in charts(spec) {
        let error = |message: String| ChartDownloadError {
            chart: chart.clone(),
            repo: repo.clone(),
            version: version.clone(),
            message,
        };
        let with_credentials =
            credentials_apply(access.url_regex.as_deref(), &repo, &chart).map_err(error)?;
        let work = tempfile::tempdir().map_err(|e| error(e.to_string()))?;
        let untar = work.path().join("chart");
        let pull = Pull {
            helm,
            work: work.path(),
            access,
            with_credentials,
        };
        match GitChart::parse(&chart).filter(|_| repo.is_empty()) {
            Some(git) => git.fetch(&untar, &pull).map_err(error)?,
            None => pull.run(&chart, &repo, &version, &untar).map_err(error)?,
        }
        let prefix = embedded_chart_dir(&chart, &repo, &version);
        let fetched = crate::dependencies::files_below(&untar).map_err(|e| error(e.to_string()))?;
        for (relative, content) in fetched {
            files.insert(format!("{prefix}/{relative}"), content);
        }
    }
    Ok(())
}

/// One `helm pull` in a scratch directory of its own.
struct Pull<'a> {
    helm: &'a Path,
    work: &'a Path,
    access: &'a ChartAccess,
    with_credentials: bool,
}

impl Pull<'_> {
    /// A helm command with its own configuration, cache and registry login (credentials
    /// never go on a command line, where other processes could read them).
    fn helm(&self) -> Command {
        crate::helm::command(self.helm, self.work)
    }

    fn run(&self, chart: &str, repo: &str, version: &str, untar: &Path) -> Result<(), String> {
        let access = &self.access.access;
        let ca_file = match &access.ca_bundle {
            Some(pem) => {
                let path = self.work.join("ca.pem");
                std::fs::write(&path, pem).map_err(|e| e.to_string())?;
                Some(path)
            }
            None => None,
        };
        let credentials = match (&access.username, &access.password) {
            (Some(user), Some(password)) if self.with_credentials => Some((user, password)),
            _ => None,
        };
        let mut target = vec![chart.to_owned()];
        let mut tls: Vec<String> = Vec::new();
        if let Some(path) = &ca_file {
            tls.extend(["--ca-file".to_owned(), path.display().to_string()]);
        }
        if access.insecure_skip_tls_verify {
            tls.push("--insecure-skip-tls-verify".to_owned());
        }
        match credentials {
            Some((user, password)) if !chart.starts_with("oci://") && !repo.is_empty() => {
                self.add_repository(repo, user, password, ca_file.as_deref())?;
                target = vec![format!("{REPOSITORY}/{chart}")];
            }
            Some((user, password)) if chart.starts_with("oci://") => {
                self.registry_login(chart, user, password, &tls)?;
            }
            _ if !repo.is_empty() => target.extend(["--repo".to_owned(), repo.to_owned()]),
            _ => {}
        }
        let mut command = self.helm();
        command
            .arg("pull")
            .args(&target)
            .args(["--untar", "--untardir"])
            .arg(untar)
            .args(&tls);
        if !version.is_empty() {
            command.args(["--version", version]);
        }
        if self.access.plain_http && chart.starts_with("oci://") {
            command.arg("--plain-http");
        }
        crate::helm::run(command)
    }

    /// A repository entry with the credentials in helm's `repositories.yaml`, and its index.
    fn add_repository(
        &self,
        repo: &str,
        user: &str,
        password: &str,
        ca_file: Option<&Path>,
    ) -> Result<(), String> {
        let config = self.work.join("helm").join("config");
        std::fs::create_dir_all(&config).map_err(|e| e.to_string())?;
        let entry = serde_json::json!({
            "name": REPOSITORY,
            "url": repo,
            "username": user,
            "password": password,
            "caFile": ca_file.map(|p| p.display().to_string()).unwrap_or_default(),
            "insecure_skip_tls_verify": self.access.access.insecure_skip_tls_verify,
        });
        let file = serde_json::json!({"apiVersion": "", "repositories": [entry]});
        std::fs::write(config.join("repositories.yaml"), file.to_string())
            .map_err(|e| e.to_string())?;
        let mut update = self.helm();
        update.args(["repo", "update", REPOSITORY]);
        crate::helm::run(update)
    }

    /// `helm registry login` with the password on standard input.
    fn registry_login(
        &self,
        chart: &str,
        user: &str,
        password: &str,
        tls: &[String],
    ) -> Result<(), String> {
        use std::io::Write as _;
        let host = chart
            .trim_start_matches("oci://")
            .split('/')
            .next()
            .unwrap_or_default();
        let mut login = self.helm();
        login
            .args([
                "registry",
                "login",
                host,
                "--username",
                user,
                "--password-stdin",
            ])
            .args(tls.iter().filter(|a| *a != "--insecure-skip-tls-verify"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        if self.access.access.insecure_skip_tls_verify {
            login.arg("--insecure");
        }
        if self.access.plain_http {
            login.arg("--plain-http");
        }
        let mut child = login.spawn().map_err(|e| e.to_string())?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(password.as_bytes())
                .map_err(|e| e.to_string())?;
        }
        let output = child.wait_with_output().map_err(|e| e.to_string())?;
        if output.status.success() {
            Ok(())
        } else {
            Err(crate::helm::last_line(
                &output.stderr,
                "helm registry login failed",
            ))
        }
    }
}

/// A chart in a git repository, as go-getter addresses it (Fleet downloads `helm.chart`
/// with go-getter): `git::<url>//<subdir>?ref=<ref>`, or `github.com/<org>/<repo>//<subdir>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitChart {
    pub url: String,
    pub subdir: String,
    pub reference: Option<String>,
}

impl GitChart {
    /// The git chart `chart` names, if it names one.
    pub fn parse(chart: &str) -> Option<Self> {
        let rest = if let Some(rest) = chart.strip_prefix("git::") {
            rest.to_owned()
        } else if chart.starts_with("github.com/") || chart.starts_with("gitlab.com/") {
            format!("https://{chart}")
        } else {
            return None;
        };
        let (rest, query) = rest.split_once('?').unwrap_or((&rest, ""));
        let reference = query
            .split('&')
            .find_map(|pair| pair.strip_prefix("ref="))
            .map(str::to_owned);
        // The subdirectory follows the first `//` after the scheme's.
        let scheme_end = rest.find("://").map_or(0, |i| i + 3);
        let (url, subdir) = match rest[scheme_end..].find("//") {
            Some(at) => (
                rest[..scheme_end + at].to_owned(),
                rest[scheme_end + at + 2..].to_owned(),
            ),
            None => (rest.to_owned(), String::new()),
        };
        let url = if chart.starts_with("git::") || url.ends_with(".git") {
            url
        } else {
            format!("{url}.git")
        };
        Some(Self {
            url,
            subdir: subdir.trim_matches('/').to_owned(),
            reference,
        })
    }

    /// Whether the repository is reached over ssh (where an SSH key applies).
    fn over_ssh(&self) -> bool {
        self.url.starts_with("ssh://")
            || self.url.starts_with("git://")
            || (!self.url.contains("://") && self.url.contains('@') && self.url.contains(':'))
    }

    /// Clones the repository at the reference (the real `git`) and copies the chart's
    /// directory to `dest/<its name>`; with the pull's credentials when they apply (an SSH
    /// key over ssh, else basic auth over HTTP(S), as Fleet's `setGitAuth`).
    fn fetch(&self, dest: &Path, pull: &Pull<'_>) -> Result<(), String> {
        let work = tempfile::tempdir().map_err(|e| e.to_string())?;
        let checkout = work.path().join("repo");
        let mut clone = Command::new("git");
        clone
            .args(["-c", "advice.detachedHead=false", "clone", "--quiet"])
            .arg(&self.url)
            .arg(&checkout)
            .env("GIT_TERMINAL_PROMPT", "0");
        if pull.with_credentials {
            self.authenticate(&mut clone, work.path(), pull.access)?;
        }
        crate::helm::run(clone)?;
        if let Some(reference) = &self.reference {
            let mut checkout_ref = Command::new("git");
            checkout_ref
                .args([
                    "-c",
                    "advice.detachedHead=false",
                    "checkout",
                    "--quiet",
                    reference,
                ])
                .current_dir(&checkout);
            crate::helm::run(checkout_ref)?;
        }
        let source = checkout.join(&self.subdir);
        if !source.join("Chart.yaml").is_file() {
            return Err(format!(
                "no Chart.yaml in {:?} of {}",
                self.subdir, self.url
            ));
        }
        let name = Path::new(&self.subdir)
            .file_name()
            .map_or_else(|| "chart".to_owned(), |n| n.to_string_lossy().into_owned());
        for (relative, content) in
            crate::dependencies::files_below(&source).map_err(|e| e.to_string())?
        {
            if relative.starts_with(".git/") {
                continue;
            }
            let target = dest.join(&name).join(&relative);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
            }
            std::fs::write(&target, content).map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

impl GitChart {
    /// Gives `clone` the credentials of `access` that fit the URL: the SSH key (a private
    /// file in `work`, with the known hosts if given) over ssh; the user and password as a
    /// basic auth header (in git's environment, never on a command line) over HTTP(S).
    fn authenticate(
        &self,
        clone: &mut Command,
        work: &Path,
        access: &ChartAccess,
    ) -> Result<(), String> {
        let private = |name: &str, content: &[u8]| -> Result<std::path::PathBuf, String> {
            use std::io::Write as _;
            use std::os::unix::fs::OpenOptionsExt as _;
            let path = work.join(name);
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| e.to_string())?;
            file.write_all(content).map_err(|e| e.to_string())?;
            Ok(path)
        };
        match (&access.ssh_private_key, self.over_ssh()) {
            (Some(key), true) => {
                let key = private("ssh-key", key)?;
                let hosts = match &access.ssh_known_hosts {
                    Some(hosts) => format!(
                        "-o UserKnownHostsFile={} -o StrictHostKeyChecking=yes",
                        private("known_hosts", hosts)?.display()
                    ),
                    None => {
                        "-o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no".to_owned()
                    }
                };
                let command = format!(
                    "ssh -i {} -o IdentitiesOnly=yes -o BatchMode=yes {hosts}",
                    key.display()
                );
                clone.env("GIT_SSH_COMMAND", command);
            }
            _ => {
                let (Some(user), Some(password)) =
                    (&access.access.username, &access.access.password)
                else {
                    return Ok(());
                };
                if self.url.starts_with("https://") || self.url.starts_with("http://") {
                    let basic = base64::engine::general_purpose::STANDARD
                        .encode(format!("{user}:{password}"));
                    clone
                        .env("GIT_CONFIG_COUNT", "1")
                        .env("GIT_CONFIG_KEY_0", "http.extraHeader")
                        .env(
                            "GIT_CONFIG_VALUE_0",
                            format!("Authorization: Basic {basic}"),
                        );
                }
            }
        }
        Ok(())
    }
}

/// The name of the repository entry a pull with credentials uses.
const REPOSITORY: &str = "fleet-bundle";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_go_only_where_the_regex_matches_from_the_start() {
        // (regex, repo, chart, credentials sent)
        let cases = [
            (None, "https://charts.example", "web", false),
            (Some(""), "https://charts.example", "web", false),
            (
                Some("https://charts\\.example"),
                "https://charts.example",
                "web",
                true,
            ),
            (
                Some("https://charts\\.example"),
                "https://evil/?u=https://charts.example",
                "web",
                false,
            ),
            (
                Some("a|https://charts"),
                "https://charts.example",
                "web",
                true,
            ),
            (Some("oci://registry"), "", "oci://registry/web", true),
        ];
        for (regex, repo, chart, want) in cases {
            assert_eq!(
                credentials_apply(regex, repo, chart),
                Ok(want),
                "{regex:?} {repo}"
            );
        }
        assert!(credentials_apply(Some("("), "https://x", "c").is_err());
    }

    #[test]
    fn go_getter_git_charts_are_recognized() {
        // (chart, url, subdir, ref)
        let cases = [
            (
                "git::https://example.com/org/charts.git//web?ref=v1.2.0",
                Some(("https://example.com/org/charts.git", "web", Some("v1.2.0"))),
            ),
            (
                "git::file:///srv/repo//charts/app",
                Some(("file:///srv/repo", "charts/app", None)),
            ),
            (
                "github.com/org/charts//web?ref=main",
                Some(("https://github.com/org/charts.git", "web", Some("main"))),
            ),
            ("https://example.com/web-1.0.0.tgz", None),
            ("./chart", None),
        ];
        for (chart, want) in cases {
            let got = GitChart::parse(chart);
            let want = want.map(|(url, subdir, reference)| GitChart {
                url: url.to_owned(),
                subdir: subdir.to_owned(),
                reference: reference.map(str::to_owned),
            });
            assert_eq!(got, want, "{chart}");
        }
    }
}
