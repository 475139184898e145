//! Free loopback ports.

use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;

use crate::Error;

/// `N` distinct free ports on 127.0.0.1. They are free when this returns; a process that binds
/// them later may still lose a race with another test, which callers retry.
pub fn free_ports<const N: usize>() -> Result<[u16; N], Error> {
    let listeners = (0..N)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::io(Path::new("127.0.0.1:0"), e))?;
    let mut ports = [0; N];
    for (port, listener) in ports.iter_mut().zip(&listeners) {
        *port = listener
            .local_addr()
            .map_err(|e| Error::io(Path::new("127.0.0.1:0"), e))?
            .port();
    }
    Ok(ports)
}

/// One free port on 127.0.0.1.
pub fn free_port() -> Result<u16, Error> {
    free_ports::<1>().map(|[port]| port)
}
