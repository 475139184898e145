//! A TCP proxy a test controls, to make a server unreachable for one client only.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::Error;

/// Forwards connections from a loopback port to `target` until [`block`](Self::block)ed:
/// then existing connections are cut and new ones are closed at once, as if the server had
/// gone away for the clients behind the proxy. Stops on drop.
#[derive(Debug)]
pub struct TcpProxy {
    addr: SocketAddr,
    state: Arc<State>,
    accept: JoinHandle<()>,
}

#[derive(Debug, Default)]
struct State {
    blocked: AtomicBool,
    connections: Mutex<Vec<JoinHandle<()>>>,
}

impl State {
    fn cut_all(&self) {
        if let Ok(mut connections) = self.connections.lock() {
            for connection in connections.drain(..) {
                connection.abort();
            }
        }
    }
}

impl TcpProxy {
    pub async fn start(target: SocketAddr) -> Result<Self, Error> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| Error::io(Path::new("127.0.0.1:0"), e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::io(Path::new("127.0.0.1:0"), e))?;
        let state = Arc::new(State::default());
        let accept = tokio::spawn(accept_loop(listener, target, state.clone()));
        Ok(Self {
            addr,
            state,
            accept,
        })
    }

    /// The proxy's address (`127.0.0.1:PORT`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Cuts every connection and refuses new ones until [`unblock`](Self::unblock).
    pub fn block(&self) {
        self.state.blocked.store(true, Ordering::SeqCst);
        self.state.cut_all();
    }

    pub fn unblock(&self) {
        self.state.blocked.store(false, Ordering::SeqCst);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.state.cut_all();
    }
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, state: Arc<State>) {
    while let Ok((mut inbound, _)) = listener.accept().await {
        if state.blocked.load(Ordering::SeqCst) {
            drop(inbound);
            continue;
        }
        let connection = tokio::spawn(async move {
            if let Ok(mut outbound) = TcpStream::connect(target).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
        if let Ok(mut connections) = state.connections.lock() {
            connections.retain(|c| !c.is_finished());
            connections.push(connection);
        }
    }
}
