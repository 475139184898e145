//! The processes of a control plane: where their binaries are, the certificates they use,
//! and the command line of each (etcd, kube-apiserver, kube-controller-manager,
//! kube-scheduler).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{ADMIN_GROUP, BASE_CONTROLLERS, NODE_CONTROLLERS, write};
use crate::Error;
use crate::binaries::{self, Tool};
use crate::certs::{CertAuthority, ServiceAccountSigner};
use crate::network::{ClusterNetwork, HOST_IP};

/// Where one plane's processes find what they share.
pub(super) struct Layout<'a> {
    pub name: &'a str,
    pub dir: &'a Path,
    pub pki: &'a Pki,
    /// The address the API server serves on.
    pub host: &'a str,
    pub server: &'a str,
    pub kubeconfig: &'a Path,
    /// etcd's client and peer ports, the API server's port.
    pub ports: [u16; 3],
    /// With nodes: the plane's pod and service network.
    pub network: Option<&'a ClusterNetwork>,
}

/// The binaries one control plane runs.
pub(super) struct Binaries {
    pub etcd: PathBuf,
    pub apiserver: PathBuf,
    pub controller_manager: Option<PathBuf>,
    pub scheduler: Option<PathBuf>,
}

impl Binaries {
    pub fn locate(controller_manager: bool, nodes: bool) -> Result<Self, Error> {
        Ok(Self {
            etcd: binaries::ensure(Tool::Etcd)?,
            apiserver: binaries::ensure(Tool::KubeApiserver)?,
            controller_manager: controller_manager
                .then(|| binaries::ensure(Tool::KubeControllerManager))
                .transpose()?,
            scheduler: nodes
                .then(|| binaries::ensure(Tool::KubeScheduler))
                .transpose()?,
        })
    }
}

/// The certificate files of one plane.
pub(super) struct Pki {
    pub dir: PathBuf,
    pub ca: CertAuthority,
}

impl Pki {
    pub fn generate(dir: &Path, network: Option<&ClusterNetwork>) -> Result<Self, Error> {
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let ca = CertAuthority::new("fleet-rs-testkit-ca")?;
        let serving = match network {
            Some(network) => {
                // What in-cluster clients dial: the `kubernetes` Service by IP and by name.
                let kubelet = ca.client_cert("kube-apiserver-kubelet-client", &[ADMIN_GROUP])?;
                write(&dir.join("apiserver-kubelet-client.crt"), &kubelet.cert_pem)?;
                write(&dir.join("apiserver-kubelet-client.key"), &kubelet.key_pem)?;
                ca.serving_cert_for(
                    &[
                        "kubernetes",
                        "kubernetes.default",
                        "kubernetes.default.svc",
                        "kubernetes.default.svc.cluster.local",
                    ],
                    &[HOST_IP.into(), network.kubernetes_service_ip().into()],
                )?
            }
            None => ca.serving_cert()?,
        };
        let signer = ServiceAccountSigner::new()?;
        let pki = Self {
            dir: dir.to_owned(),
            ca,
        };
        write(&pki.path("ca.crt"), &pki.ca.cert_pem())?;
        write(&pki.path("apiserver.crt"), &serving.cert_pem)?;
        write(&pki.path("apiserver.key"), &serving.key_pem)?;
        write(&pki.path("sa.key"), &signer.private_key_pem)?;
        write(&pki.path("sa.pub"), &signer.public_key_pem)?;
        Ok(pki)
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }
}

/// etcd, on loopback, without fsync (test data).
pub(super) fn etcd(binary: &Path, layout: &Layout<'_>) -> Command {
    let [etcd_port, peer_port, _] = layout.ports;
    let etcd_url = format!("http://127.0.0.1:{etcd_port}");
    let peer_url = format!("http://127.0.0.1:{peer_port}");
    let mut etcd = Command::new(binary);
    etcd.arg(format!("--name={}", layout.name))
        .arg(format!("--data-dir={}", layout.dir.join("etcd").display()))
        .arg(format!("--listen-client-urls={etcd_url}"))
        .arg(format!("--advertise-client-urls={etcd_url}"))
        .arg(format!("--listen-peer-urls={peer_url}"))
        .arg(format!("--initial-advertise-peer-urls={peer_url}"))
        .arg(format!("--initial-cluster={}={peer_url}", layout.name))
        .arg("--unsafe-no-fsync=true");
    etcd
}

/// kube-apiserver on etcd, with the plane's certificates; with nodes, kubelets authorized as
/// nodes and reachable for logs and exec.
pub(super) fn apiserver(binary: &Path, layout: &Layout<'_>) -> Command {
    let [etcd_port, _, api_port] = layout.ports;
    let (host, pki) = (layout.host, layout.pki);
    let file = |name: &str| pki.path(name).display().to_string();
    let mut apiserver = Command::new(binary);
    apiserver
        .arg(format!("--etcd-servers=http://127.0.0.1:{etcd_port}"))
        .arg(format!("--bind-address={host}"))
        .arg(format!("--advertise-address={host}"))
        .arg(format!("--secure-port={api_port}"))
        .arg(format!("--cert-dir={}", pki.dir.display()))
        .arg(format!("--tls-cert-file={}", file("apiserver.crt")))
        .arg(format!("--tls-private-key-file={}", file("apiserver.key")))
        .arg(format!("--client-ca-file={}", file("ca.crt")))
        .arg(format!("--service-account-issuer={}/", layout.server))
        .arg(format!("--service-account-key-file={}", file("sa.pub")))
        .arg(format!(
            "--service-account-signing-key-file={}",
            file("sa.key")
        ))
        .arg("--allow-privileged=true");
    match layout.network {
        Some(network) => {
            apiserver
                .arg(format!(
                    "--service-cluster-ip-range={}",
                    network.service_cidr()
                ))
                // Kubelets are nodes (client certificates `system:node:<name>`), limited to
                // their own Node and pods; the API server reaches them for logs/exec.
                .arg("--authorization-mode=Node,RBAC")
                .arg("--enable-admission-plugins=NodeRestriction")
                .arg(format!(
                    "--kubelet-client-certificate={}",
                    file("apiserver-kubelet-client.crt")
                ))
                .arg(format!(
                    "--kubelet-client-key={}",
                    file("apiserver-kubelet-client.key")
                ))
                .arg("--kubelet-preferred-address-types=InternalIP");
        }
        None => {
            apiserver
                .arg("--service-cluster-ip-range=10.0.0.0/24")
                .arg("--authorization-mode=RBAC")
                // On loopback the `kubernetes` Service cannot have endpoints.
                .arg("--endpoint-reconciler-type=none");
        }
    }
    apiserver
}

/// kube-controller-manager with the controllers fleet-rs relies on (and, with nodes, those
/// pods need).
pub(super) fn controller_manager(binary: &Path, layout: &Layout<'_>) -> Command {
    let controllers = match layout.network {
        Some(_) => format!("{BASE_CONTROLLERS},{NODE_CONTROLLERS}"),
        None => BASE_CONTROLLERS.to_owned(),
    };
    let mut kcm = Command::new(binary);
    kcm.arg(format!("--kubeconfig={}", layout.kubeconfig.display()))
        .arg(format!(
            "--service-account-private-key-file={}",
            layout.pki.path("sa.key").display()
        ))
        .arg(format!(
            "--root-ca-file={}",
            layout.pki.path("ca.crt").display()
        ))
        .arg(format!("--controllers={controllers}"))
        .arg("--leader-elect=false")
        .arg("--use-service-account-credentials=false")
        .arg("--bind-address=127.0.0.1")
        .arg("--secure-port=0");
    kcm
}

/// kube-scheduler (planes with nodes).
pub(super) fn scheduler(binary: &Path, layout: &Layout<'_>) -> Command {
    let mut command = Command::new(binary);
    command
        .arg(format!("--kubeconfig={}", layout.kubeconfig.display()))
        .arg("--leader-elect=false")
        .arg("--bind-address=127.0.0.1")
        .arg("--secure-port=0");
    command
}
