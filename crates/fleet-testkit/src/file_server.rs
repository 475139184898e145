//! A static HTTP file server for tests (e.g. a Helm chart repository: `index.yaml` and chart
//! archives made with the real `helm package` and `helm repo index`), optionally behind basic
//! auth; stops on drop.

use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use base64::Engine as _;
use tokio::sync::oneshot;

use crate::Error;

/// Serves the files below a directory over plain HTTP on 127.0.0.1.
#[derive(Debug)]
pub struct FileServer {
    server: LocalServer,
}

/// An axum app served on a free 127.0.0.1 port by a task of the current runtime; stops on
/// drop. What the test HTTP servers share.
#[derive(Debug)]
pub(crate) struct LocalServer {
    pub(crate) address: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

impl LocalServer {
    pub(crate) async fn spawn(app: Router) -> Result<Self, Error> {
        Self::spawn_on(app, std::net::Ipv4Addr::LOCALHOST.into()).await
    }

    /// Serves on a free port of `ip` (e.g. [`crate::network::HOST_IP`], which pods reach).
    pub(crate) async fn spawn_on(app: Router, ip: std::net::IpAddr) -> Result<Self, Error> {
        let bind = SocketAddr::new(ip, 0);
        let listener = tokio::net::TcpListener::bind(bind)
            .await
            .map_err(|e| Error::io(Path::new(&bind.to_string()), e))?;
        let address = listener
            .local_addr()
            .map_err(|e| Error::io(Path::new(&bind.to_string()), e))?;
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(Self {
            address,
            stop: Some(stop),
        })
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn app(root: &Path, basic_auth: Option<(&str, &str)>) -> Router {
    Router::new().fallback(serve).with_state(Arc::new(Served {
        root: root.to_owned(),
        basic_auth: basic_auth.map(|(u, p)| (u.to_owned(), p.to_owned())),
    }))
}

/// What the server serves, and to whom.
#[derive(Debug)]
struct Served {
    root: PathBuf,
    basic_auth: Option<(String, String)>,
}

impl FileServer {
    /// Serves `root` to anyone.
    pub async fn start(root: &Path) -> Result<Self, Error> {
        Self::start_with_basic_auth(root, None).await
    }

    /// Serves `root` to anyone on a free port of `ip` (e.g. [`crate::network::HOST_IP`],
    /// where pods reach it).
    pub async fn start_on(root: &Path, ip: std::net::IpAddr) -> Result<Self, Error> {
        Ok(Self {
            server: LocalServer::spawn_on(app(root, None), ip).await?,
        })
    }

    /// Serves `root`; with `basic_auth`, every request must carry those credentials.
    pub async fn start_with_basic_auth(
        root: &Path,
        basic_auth: Option<(&str, &str)>,
    ) -> Result<Self, Error> {
        Ok(Self {
            server: LocalServer::spawn(app(root, basic_auth)).await?,
        })
    }

    /// `http://<address>:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.server.address)
    }

    pub fn address(&self) -> SocketAddr {
        self.server.address
    }
}

/// Whether `headers` carry basic-auth `credentials` (user, password).
pub(crate) fn basic_auth_ok(credentials: &(String, String), headers: &HeaderMap) -> bool {
    let (name, password) = credentials;
    let expected = base64::engine::general_purpose::STANDARD.encode(format!("{name}:{password}"));
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        == Some(expected.as_str())
}

async fn serve(
    State(served): State<Arc<Served>>,
    headers: HeaderMap,
    uri: Uri,
) -> (StatusCode, [(&'static str, &'static str); 1], Vec<u8>) {
    let challenge = [("www-authenticate", "Basic realm=\"files\"")];
    if let Some(credentials) = &served.basic_auth
        && !basic_auth_ok(credentials, &headers)
    {
        return (StatusCode::UNAUTHORIZED, challenge, Vec::new());
    }
    let (status, body) = read(&served.root, &uri).await;
    (status, challenge, body)
}

async fn read(root: &Path, uri: &Uri) -> (StatusCode, Vec<u8>) {
    let relative = Path::new(uri.path().trim_start_matches('/'));
    // Only plain path segments: no way out of the root.
    if relative
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
    {
        return (StatusCode::BAD_REQUEST, Vec::new());
    }
    match tokio::fs::read(root.join(relative)).await {
        Ok(bytes) => (StatusCode::OK, bytes),
        Err(_) => (StatusCode::NOT_FOUND, Vec::new()),
    }
}
