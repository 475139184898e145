//! A static HTTP file server for tests (e.g. a Helm chart repository: `index.yaml` and chart
//! archives made with the real `helm package` and `helm repo index`); stops on drop.

use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use tokio::sync::oneshot;

use crate::Error;

/// Serves the files below a directory over plain HTTP on 127.0.0.1.
#[derive(Debug)]
pub struct FileServer {
    address: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

impl FileServer {
    pub async fn start(root: &Path) -> Result<Self, Error> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| Error::io(Path::new("127.0.0.1:0"), e))?;
        let address = listener
            .local_addr()
            .map_err(|e| Error::io(Path::new("127.0.0.1:0"), e))?;
        let app = Router::new()
            .fallback(serve)
            .with_state(Arc::new(root.to_owned()));
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

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn serve(State(root): State<Arc<PathBuf>>, uri: Uri) -> (StatusCode, Vec<u8>) {
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
