//! The agent's upstream identity. In order:
//!
//! 1. credentials saved earlier in the downstream Secret `fleet-agent-credentials` (so a
//!    restarted or newly elected replica does not register again);
//! 2. a Cluster named on the command line, with an upstream kubeconfig (development: any pair
//!    of clusters) or without one (the management cluster's own agent);
//! 3. registration with a ClusterRegistrationToken's `values`: create a ClusterRegistration
//!    with the import token, wait for the controller to grant it, read the agent's own
//!    credentials from the registration namespace, and save them downstream.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use fleet_api::ClusterRegistration;
use fleet_api::registration_protocol::{
    Credentials, REGISTRATION_NAMESPACE, TokenValues, credentials_secret,
};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::ObjectMeta;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use serde::{Deserialize, Serialize};

/// The downstream Secret holding the agent's upstream credentials.
pub const SECRET: &str = "fleet-agent-credentials";

/// Why the agent has no upstream identity.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("{0}")]
    Config(String),
    #[error("{action}: {source}")]
    Api { action: String, source: kube::Error },
    #[error(transparent)]
    Write(#[from] fleet_runtime::WriteError),
}

fn api(action: &str) -> impl FnOnce(kube::Error) -> CredentialsError + '_ {
    move |source| CredentialsError::Api {
        action: action.to_owned(),
        source,
    }
}

/// What the agent knows about itself upstream.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    pub api_server_url: String,
    #[serde(default)]
    pub api_server_ca: String,
    pub token: String,
    pub cluster_name: String,
    pub cluster_namespace: String,
    pub deployment_namespace: String,
}

impl Identity {
    /// A client for the upstream cluster with this identity.
    pub async fn client(&self) -> Result<Client, CredentialsError> {
        use base64::Engine as _;
        let mut cluster = serde_json::json!({"server": self.api_server_url});
        if !self.api_server_ca.is_empty() {
            cluster["certificate-authority-data"] = base64::engine::general_purpose::STANDARD
                .encode(&self.api_server_ca)
                .into();
        }
        let kubeconfig: Kubeconfig = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "upstream", "cluster": cluster}],
            "users": [{"name": "agent", "user": {"token": self.token}}],
            "contexts": [{"name": "upstream", "context": {"cluster": "upstream", "user": "agent"}}],
            "current-context": "upstream",
        }))
        .map_err(|e| CredentialsError::Config(format!("upstream kubeconfig: {e}")))?;
        client_from(kubeconfig).await
    }
}

async fn client_from(kubeconfig: Kubeconfig) -> Result<Client, CredentialsError> {
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| CredentialsError::Config(format!("upstream kubeconfig: {e}")))?;
    Client::try_from(config).map_err(|e| CredentialsError::Config(format!("upstream client: {e}")))
}

/// The upstream client and where this agent works, without registration: a kubeconfig of
/// the management cluster, or none when the agent runs in the management cluster itself (the
/// `local` cluster: upstream is downstream).
pub async fn direct(
    path: Option<&Path>,
    downstream: &Client,
    cluster_namespace: &str,
    cluster_name: &str,
) -> Result<(Client, Identity), CredentialsError> {
    let client = match path {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .map_err(|e| CredentialsError::Config(format!("{}: {e}", path.display())))?;
            client_from(kubeconfig).await?
        }
        None => downstream.clone(),
    };
    let identity = Identity {
        api_server_url: String::new(),
        api_server_ca: String::new(),
        token: String::new(),
        cluster_name: cluster_name.to_owned(),
        cluster_namespace: cluster_namespace.to_owned(),
        deployment_namespace: fleet_api::naming::cluster_namespace(cluster_namespace, cluster_name),
    };
    Ok((client, identity))
}

/// The credentials saved by an earlier registration, if any.
pub async fn saved(
    downstream: &Client,
    namespace: &str,
) -> Result<Option<Identity>, CredentialsError> {
    let saved = Api::<Secret>::namespaced(downstream.clone(), namespace)
        .get_opt(SECRET)
        .await
        .map_err(api("reading the saved credentials"))?;
    Ok(saved.and_then(|secret| {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get("identity"))
            .and_then(|v| serde_json::from_slice::<Identity>(&v.0).ok())
    }))
}

/// Saved credentials, or a registration with the token values at `values_path`.
pub async fn obtain(
    writer: &fleet_runtime::Writer,
    downstream: &Client,
    namespace: &str,
    values_path: Option<&Path>,
    client_id: Option<&str>,
) -> Result<Identity, CredentialsError> {
    if let Some(identity) = saved(downstream, namespace).await? {
        return Ok(identity);
    }
    let secrets: Api<Secret> = Api::namespaced(downstream.clone(), namespace);
    let Some(values_path) = values_path else {
        return Err(CredentialsError::Config(
            "not registered: pass --registration-values (a ClusterRegistrationToken's values) or --upstream-kubeconfig".to_owned(),
        ));
    };
    let text = std::fs::read_to_string(values_path)
        .map_err(|e| CredentialsError::Config(format!("{}: {e}", values_path.display())))?;
    let values: TokenValues = serde_saphyr::from_str(&text)
        .map_err(|e| CredentialsError::Config(format!("{}: {e}", values_path.display())))?;
    let client_id = match client_id {
        Some(id) => id.to_owned(),
        // Fleet's default: the downstream kube-system namespace's UID, stable per cluster.
        None => Api::<Namespace>::all(downstream.clone())
            .get("kube-system")
            .await
            .map_err(api("reading kube-system for the client ID"))?
            .metadata
            .uid
            .unwrap_or_default(),
    };
    let identity = register(writer, &values, &client_id).await?;
    let mut secret = Secret {
        metadata: ObjectMeta {
            name: Some(SECRET.to_owned()),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(
            "identity".to_owned(),
            ByteString(serde_json::to_vec(&identity).unwrap_or_default()),
        )])),
        ..Secret::default()
    };
    secret.metadata.namespace = Some(namespace.to_owned());
    match writer.create(&secrets, &secret).await {
        Ok(_) => {}
        Err(e) if e.is_conflict() => {}
        Err(e) => return Err(e.into()),
    }
    Ok(identity)
}

async fn register(
    writer: &fleet_runtime::Writer,
    values: &TokenValues,
    client_id: &str,
) -> Result<Identity, CredentialsError> {
    let api_server_url = values.api_server_url.clone().ok_or_else(|| {
        CredentialsError::Config("the registration values have no apiServerURL".to_owned())
    })?;
    let import = Identity {
        api_server_url: api_server_url.clone(),
        api_server_ca: values.api_server_ca.clone().unwrap_or_default(),
        token: values.token.clone(),
        cluster_name: String::new(),
        cluster_namespace: values.cluster_namespace.clone(),
        deployment_namespace: String::new(),
    };
    let client = import.client().await?;
    let random = format!("{:x}", jiff::Timestamp::now().as_nanosecond());
    let registration: ClusterRegistration = serde_json::from_value(serde_json::json!({
        "metadata": {"generateName": "request-"},
        "spec": {"clientID": client_id, "clientRandom": random},
    }))
    .map_err(|e| CredentialsError::Config(e.to_string()))?;
    let registrations =
        Api::<ClusterRegistration>::namespaced(client.clone(), &values.cluster_namespace);
    writer
        .create(&registrations, &registration)
        .await
        .map_err(|e| {
            CredentialsError::Config(format!(
                "registering (is the token valid and not expired?): {e}"
            ))
        })?;
    tracing::info!(client_id, namespace = %values.cluster_namespace, "registration requested; waiting for the controller");
    let secrets: Api<Secret> = Api::namespaced(client, REGISTRATION_NAMESPACE);
    let name = credentials_secret(client_id, &random);
    let mut delay = Duration::from_millis(200);
    loop {
        match secrets.get_opt(&name).await {
            Ok(Some(secret)) => {
                let granted = Credentials::from_data(&secret.data.unwrap_or_default());
                return Ok(Identity {
                    api_server_url: api_server_url.clone(),
                    api_server_ca: values.api_server_ca.clone().unwrap_or_default(),
                    token: granted.token,
                    cluster_name: granted.cluster_name,
                    cluster_namespace: granted.cluster_namespace,
                    deployment_namespace: granted.deployment_namespace,
                });
            }
            Ok(None) | Err(kube::Error::Api(_)) => {}
            Err(e) => tracing::warn!(error = %e, "waiting for the registration; retrying"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}
