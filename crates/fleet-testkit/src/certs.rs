//! Certificates for one control plane, generated in memory with `rcgen`.
//!
//! Layout follows controller-runtime's envtest: one CA signs the apiserver's serving certificate
//! and the client certificates (CN = user, O = groups), and a separate key pair signs
//! ServiceAccount tokens. ECDSA P-256, valid for a week: plenty for a test or a demo.

use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};

use crate::Error;

const VALIDITY: Duration = Duration::from_secs(7 * 24 * 3600);

/// A PEM certificate and its PEM private key.
#[derive(Clone)]
pub struct CertPair {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for CertPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertPair").finish_non_exhaustive()
    }
}

/// A small certificate authority.
pub struct CertAuthority {
    issuer: CertifiedIssuer<'static, KeyPair>,
    key_pem: String,
}

impl std::fmt::Debug for CertAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertAuthority").finish_non_exhaustive()
    }
}

fn now_window() -> (time::OffsetDateTime, time::OffsetDateTime) {
    let now = time::OffsetDateTime::now_utc();
    // A minute of slack before "now" absorbs small clock differences between processes.
    (now - Duration::from_secs(60), now + VALIDITY)
}

impl CertAuthority {
    /// A new self-signed CA with the given common name.
    pub fn new(common_name: &str) -> Result<Self, Error> {
        let mut params = CertificateParams::default();
        params.distinguished_name = name(common_name, &["fleet-rs-testkit"]);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        (params.not_before, params.not_after) = now_window();
        let key = KeyPair::generate()?;
        let key_pem = key.serialize_pem();
        let issuer = CertifiedIssuer::self_signed(params, key)?;
        Ok(Self { issuer, key_pem })
    }

    /// The CA certificate (PEM), what clients and servers trust.
    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// The CA's private key (PEM), e.g. for kube-controller-manager's signing controllers.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// A serving certificate for `localhost` and 127.0.0.1.
    pub fn serving_cert(&self) -> Result<CertPair, Error> {
        self.serving_cert_for(&[], &[])
    }

    /// A serving certificate for `localhost`, 127.0.0.1 and the given names and addresses
    /// (an API server that pods reach through the `kubernetes` Service, a kubelet).
    pub fn serving_cert_for(
        &self,
        names: &[&str],
        addresses: &[std::net::IpAddr],
    ) -> Result<CertPair, Error> {
        let mut dns = vec!["localhost".to_owned()];
        dns.extend(names.iter().map(|n| (*n).to_owned()));
        let mut params = CertificateParams::new(dns)?;
        params
            .subject_alt_names
            .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
        params
            .subject_alt_names
            .extend(addresses.iter().copied().map(SanType::IpAddress));
        params.distinguished_name = name("localhost", &[]);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params)
    }

    /// A client certificate: the API server reads CN as the user name and O as the groups.
    pub fn client_cert(&self, user: &str, groups: &[&str]) -> Result<CertPair, Error> {
        let mut params = CertificateParams::default();
        params.distinguished_name = name(user, groups);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params)
    }

    fn sign(&self, mut params: CertificateParams) -> Result<CertPair, Error> {
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        (params.not_before, params.not_after) = now_window();
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(CertPair {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

fn name(common_name: &str, organizations: &[&str]) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    for org in organizations {
        dn.push(DnType::OrganizationName, *org);
    }
    dn
}

/// The key pair that signs (private) and verifies (public) ServiceAccount tokens.
pub struct ServiceAccountSigner {
    pub private_key_pem: String,
    pub public_key_pem: String,
}

impl std::fmt::Debug for ServiceAccountSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountSigner")
            .finish_non_exhaustive()
    }
}

impl ServiceAccountSigner {
    pub fn new() -> Result<Self, Error> {
        let key = KeyPair::generate()?;
        Ok(Self {
            private_key_pem: key.serialize_pem(),
            public_key_pem: key.public_key_pem(),
        })
    }
}
