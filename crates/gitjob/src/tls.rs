//! A GitRepo's `caBundle`: the server's certificate must chain to one of its CAs and name the
//! host. libgit2's CA locations are process-wide, so the check runs in the certificate
//! callback with rustls's verifier; libgit2 hands over only the leaf certificate, so the
//! bundle must hold the CA that signed it (intermediates included in the bundle work too).

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

/// Whether `leaf` (DER) chains to a CA of `bundle` (PEM) and is valid for `host`.
pub fn verify(bundle: &[u8], leaf: &[u8], host: &str) -> Result<(), String> {
    let mut roots = RootCertStore::empty();
    let mut intermediates = Vec::new();
    for cert in CertificateDer::pem_slice_iter(bundle) {
        let cert = cert.map_err(|e| format!("caBundle is not PEM: {e}"))?;
        intermediates.push(cert.clone());
        roots.add(cert).map_err(|e| format!("caBundle: {e}"))?;
    }
    if roots.is_empty() {
        return Err("caBundle holds no certificate".to_owned());
    }
    let verifier = WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .map_err(|e| format!("caBundle: {e}"))?;
    let name = ServerName::try_from(host.to_owned()).map_err(|e| format!("host {host}: {e}"))?;
    verifier
        .verify_server_cert(
            &CertificateDer::from(leaf.to_vec()),
            &intermediates,
            &name,
            &[],
            UnixTime::now(),
        )
        .map(|_| ())
        .map_err(|e| format!("certificate of {host} is not trusted by the caBundle: {e}"))
}
