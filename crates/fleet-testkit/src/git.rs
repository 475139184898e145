//! Real git for tests: repositories made with the `git` command, and a smart-HTTP server
//! (`git http-backend` behind a small HTTP server, with optional basic auth).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use tokio::io::AsyncWriteExt as _;

use crate::Error;

/// A git repository with a work tree in a temporary directory, on branch `master`.
#[derive(Debug)]
pub struct GitRepoFixture {
    dir: tempfile::TempDir,
}

impl GitRepoFixture {
    /// `git init` with a committer identity.
    pub fn new() -> Result<Self, Error> {
        let dir = tempfile::Builder::new()
            .prefix("fleet-git-")
            .tempdir()
            .map_err(|e| Error::io(Path::new("tempdir"), e))?;
        let repo = Self { dir };
        repo.git(&["init", "--quiet", "--initial-branch=master"])?;
        repo.git(&["config", "user.email", "test@fleet-rs.invalid"])?;
        repo.git(&["config", "user.name", "fleet-rs test"])?;
        // Let http-backend serve it without a daemon-export-ok file.
        repo.git(&["config", "http.receivepack", "false"])?;
        Ok(repo)
    }

    /// The work tree.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The directory holding the work tree (what a [`GitHttpServer`] serving it is started on).
    pub fn parent_dir(&self) -> &Path {
        self.path().parent().unwrap_or(self.path())
    }

    /// The work tree's directory name (its path on a [`GitHttpServer`] of [`parent_dir`](Self::parent_dir)).
    pub fn dir_name(&self) -> String {
        self.path()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// `file://` URL of the repository.
    pub fn file_url(&self) -> String {
        format!("file://{}", self.path().display())
    }

    /// Writes files (relative path, content), creating directories.
    pub fn write(&self, files: &[(&str, &str)]) -> Result<(), Error> {
        for (path, content) in files {
            let path = self.path().join(path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
            }
            std::fs::write(&path, content).map_err(|e| Error::io(&path, e))?;
        }
        Ok(())
    }

    /// Removes a file or directory from the work tree.
    pub fn remove(&self, path: &str) -> Result<(), Error> {
        self.git(&["rm", "-r", "--quiet", path]).map(|_| ())
    }

    /// Commits everything; returns the commit SHA.
    pub fn commit(&self, message: &str) -> Result<String, Error> {
        self.git(&["add", "--all"])?;
        self.git(&["commit", "--quiet", "--allow-empty", "-m", message])?;
        self.head()
    }

    /// Writes files and commits them.
    pub fn commit_files(&self, message: &str, files: &[(&str, &str)]) -> Result<String, Error> {
        self.write(files)?;
        self.commit(message)
    }

    pub fn head(&self) -> Result<String, Error> {
        Ok(self.git(&["rev-parse", "HEAD"])?.trim().to_owned())
    }

    /// Runs `git` in the work tree; returns its standard output.
    pub fn git(&self, args: &[&str]) -> Result<String, Error> {
        let output = std::process::Command::new("git")
            .args(args)
            .current_dir(self.path())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .output()
            .map_err(|e| Error::io(Path::new("git"), e))?;
        if !output.status.success() {
            return Err(Error::Config {
                message: format!(
                    "git {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&output.stderr)
                ),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

/// Smart HTTP for the repositories below `root` (`http://addr/<dir name>`), served by the
/// real `git http-backend`; stops on drop.
#[derive(Debug)]
pub struct GitHttpServer {
    server: crate::file_server::LocalServer,
    requests: Arc<AtomicUsize>,
}

#[derive(Debug)]
struct Served {
    root: PathBuf,
    backend: PathBuf,
    basic_auth: Option<(String, String)>,
    requests: Arc<AtomicUsize>,
}

impl GitHttpServer {
    /// Serves `root`; with `basic_auth`, every request must carry those credentials.
    pub async fn start(root: &Path, basic_auth: Option<(&str, &str)>) -> Result<Self, Error> {
        Self::start_on(root, basic_auth, std::net::Ipv4Addr::LOCALHOST.into()).await
    }

    /// [`GitHttpServer::start`] on a free port of `ip` (e.g. [`crate::network::HOST_IP`],
    /// where pods reach it).
    pub async fn start_on(
        root: &Path,
        basic_auth: Option<(&str, &str)>,
        ip: std::net::IpAddr,
    ) -> Result<Self, Error> {
        let backend = http_backend()?;
        let requests = Arc::new(AtomicUsize::new(0));
        let served = Arc::new(Served {
            root: root.to_owned(),
            backend,
            basic_auth: basic_auth.map(|(u, p)| (u.to_owned(), p.to_owned())),
            requests: requests.clone(),
        });
        let app = Router::new().fallback(cgi).with_state(served);
        Ok(Self {
            server: crate::file_server::LocalServer::spawn_on(app, ip).await?,
            requests,
        })
    }

    /// Where it listens.
    pub fn address(&self) -> SocketAddr {
        self.server.address
    }

    /// The URL of `repo` on this server (started on its [`GitRepoFixture::parent_dir`]).
    pub fn url_of(&self, repo: &GitRepoFixture) -> String {
        self.url(&repo.dir_name())
    }

    /// The URL of the repository in directory `name` below the root.
    pub fn url(&self, name: &str) -> String {
        format!("http://{}/{name}", self.server.address)
    }

    /// Requests served so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// `git http-backend`, from `git --exec-path`.
fn http_backend() -> Result<PathBuf, Error> {
    let output = std::process::Command::new("git")
        .arg("--exec-path")
        .output()
        .map_err(|e| Error::io(Path::new("git"), e))?;
    let path =
        PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()).join("git-http-backend");
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::Config {
            message: format!("{} not found: install git", path.display()),
        })
    }
}

async fn cgi(
    State(served): State<Arc<Served>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    served.requests.fetch_add(1, Ordering::SeqCst);
    let mut user = None;
    if let Some(credentials) = &served.basic_auth {
        if !crate::file_server::basic_auth_ok(credentials, &headers) {
            return reply(
                StatusCode::UNAUTHORIZED,
                &[("www-authenticate", "Basic realm=\"git\"")],
                Vec::new(),
            );
        }
        user = Some(credentials.0.clone());
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let mut env: HashMap<&str, String> = HashMap::from([
        ("GIT_PROJECT_ROOT", served.root.display().to_string()),
        ("GIT_HTTP_EXPORT_ALL", "1".to_owned()),
        ("PATH_INFO", uri.path().to_owned()),
        ("QUERY_STRING", uri.query().unwrap_or_default().to_owned()),
        ("REQUEST_METHOD", method.to_string()),
        ("CONTENT_TYPE", header("content-type")),
        ("CONTENT_LENGTH", body.len().to_string()),
        ("HTTP_CONTENT_ENCODING", header("content-encoding")),
        ("GIT_PROTOCOL", header("git-protocol")),
        ("REMOTE_ADDR", "127.0.0.1".to_owned()),
    ]);
    if let Some(user) = user {
        env.insert("REMOTE_USER", user);
    }
    let child = tokio::process::Command::new(&served.backend)
        .env_clear()
        .envs(env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let Ok(mut child) = child else {
        return reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            &[],
            b"cannot run git http-backend".to_vec(),
        );
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(&body).await;
    }
    let Ok(output) = child.wait_with_output().await else {
        return reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            &[],
            b"git http-backend failed".to_vec(),
        );
    };
    parse_cgi(&output.stdout)
}

/// A CGI response: header lines, a blank line, the body.
fn parse_cgi(output: &[u8]) -> Response {
    let split = output
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, i + 4))
        .or_else(|| {
            output
                .windows(2)
                .position(|w| w == b"\n\n")
                .map(|i| (i, i + 2))
        });
    let Some((end, body_start)) = split else {
        return reply(StatusCode::BAD_GATEWAY, &[], output.to_vec());
    };
    let head = String::from_utf8_lossy(&output[..end]);
    let mut status = StatusCode::OK;
    let mut headers = Vec::new();
    for line in head.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            status = value
                .split_whitespace()
                .next()
                .and_then(|code| code.parse::<u16>().ok())
                .and_then(|code| StatusCode::from_u16(code).ok())
                .unwrap_or(StatusCode::BAD_GATEWAY);
        } else {
            headers.push((name.trim().to_owned(), value.to_owned()));
        }
    }
    let mut response = Response::builder().status(status);
    for (name, value) in &headers {
        response = response.header(name.as_str(), value.as_str());
    }
    response
        .body(Body::from(output[body_start..].to_vec()))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

fn reply(status: StatusCode, headers: &[(&str, &str)], body: Vec<u8>) -> Response {
    let mut response = Response::builder().status(status);
    for (name, value) in headers {
        response = response.header(*name, *value);
    }
    response
        .body(Body::from(body))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}
