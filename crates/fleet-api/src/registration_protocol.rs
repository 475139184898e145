//! The registration protocol between the controller and agents, in one place: where the
//! Secrets live, what they are called, and which keys they hold (Fleet's
//! `ClusterRegistrationToken` values and agent credential Secrets).
//!
//! 1. A ClusterRegistrationToken gets a Secret of the same name whose `values` key holds
//!    [`TokenValues`] (JSON): how to reach the management cluster, with a token that may only
//!    create ClusterRegistrations.
//! 2. The agent creates a ClusterRegistration with a client ID and a random value per attempt.
//! 3. The controller creates the Cluster, the agent's identity, and the Secret
//!    [`credentials_secret`] in [`REGISTRATION_NAMESPACE`] with [`Credentials`], which the
//!    agent reads and keeps.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use serde::{Deserialize, Serialize};

use crate::naming::{key_hash, safe_concat_name};

/// Where the controller puts agents' credential Secrets.
pub const REGISTRATION_NAMESPACE: &str = "cattle-fleet-clusters-system";

/// The key of a token Secret that holds its [`TokenValues`].
pub const TOKEN_VALUES_KEY: &str = "values";

/// What a registration token's Secret gives an agent (its `values`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenValues {
    #[serde(rename = "apiServerURL")]
    pub api_server_url: Option<String>,
    #[serde(default, rename = "apiServerCA")]
    pub api_server_ca: Option<String>,
    pub cluster_namespace: String,
    #[serde(default = "registration_namespace")]
    pub system_registration_namespace: String,
    pub token: String,
}

fn registration_namespace() -> String {
    REGISTRATION_NAMESPACE.to_owned()
}

impl TokenValues {
    /// The Secret data holding these values.
    pub fn to_data(&self) -> BTreeMap<String, ByteString> {
        let json = serde_json::to_vec(self).unwrap_or_default();
        BTreeMap::from([(TOKEN_VALUES_KEY.to_owned(), ByteString(json))])
    }

    /// The values of a token Secret's data: JSON, or JSON in base64 (as Rancher writes them).
    pub fn from_data(data: &BTreeMap<String, ByteString>) -> Result<Self, String> {
        use base64::Engine as _;
        let bytes = &data
            .get(TOKEN_VALUES_KEY)
            .ok_or_else(|| format!("no {TOKEN_VALUES_KEY:?} key"))?
            .0;
        let decoded = base64::engine::general_purpose::STANDARD.decode(bytes).ok();
        serde_json::from_slice(bytes)
            .or_else(|first| match &decoded {
                Some(decoded) => serde_json::from_slice(decoded),
                None => Err(first),
            })
            .map_err(|e| format!("{TOKEN_VALUES_KEY:?}: {e}"))
    }
}

/// An agent's credentials, as the controller grants them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    pub token: String,
    pub cluster_name: String,
    pub cluster_namespace: String,
    pub deployment_namespace: String,
    pub api_server_url: String,
    pub api_server_ca: String,
}

impl Credentials {
    const KEYS: [&'static str; 6] = [
        "token",
        "clusterName",
        "clusterNamespace",
        "deploymentNamespace",
        "apiServerURL",
        "apiServerCA",
    ];

    fn fields(&self) -> [&String; 6] {
        [
            &self.token,
            &self.cluster_name,
            &self.cluster_namespace,
            &self.deployment_namespace,
            &self.api_server_url,
            &self.api_server_ca,
        ]
    }

    /// The credential Secret's data.
    pub fn to_data(&self) -> BTreeMap<String, ByteString> {
        Self::KEYS
            .iter()
            .zip(self.fields())
            .map(|(key, value)| ((*key).to_owned(), ByteString(value.clone().into_bytes())))
            .collect()
    }

    /// Credentials from a credential Secret's data (a missing key reads as empty).
    pub fn from_data(data: &BTreeMap<String, ByteString>) -> Self {
        let value = |key: &str| {
            data.get(key)
                .map(|v| String::from_utf8_lossy(&v.0).into_owned())
                .unwrap_or_default()
        };
        let [
            token,
            cluster_name,
            cluster_namespace,
            deployment_namespace,
            url,
            ca,
        ] = Self::KEYS.map(value);
        Self {
            token,
            cluster_name,
            cluster_namespace,
            deployment_namespace,
            api_server_url: url,
            api_server_ca: ca,
        }
    }
}

/// The name of the Secret with an agent's credentials (Fleet's `c-<clientID>-<random>`).
pub fn credentials_secret(client_id: &str, client_random: &str) -> String {
    safe_concat_name(&["c", client_id, client_random])
}

/// The Cluster name for an agent's client ID (Fleet's `cluster-<KeyHash(clientID)>`).
pub fn cluster_name(client_id: &str) -> String {
    safe_concat_name(&["cluster", &key_hash(client_id)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_read_back_as_written() {
        let credentials = Credentials {
            token: "t".into(),
            cluster_name: "c".into(),
            cluster_namespace: "fleet-default".into(),
            deployment_namespace: "cluster-fleet-default-c-1".into(),
            api_server_url: "https://up:6443".into(),
            api_server_ca: "PEM".into(),
        };
        let data = credentials.to_data();
        assert_eq!(
            data.get("deploymentNamespace").map(|v| v.0.as_slice()),
            Some(b"cluster-fleet-default-c-1".as_slice())
        );
        assert_eq!(Credentials::from_data(&data), credentials);
    }

    #[test]
    fn token_values_are_json_or_base64_json() {
        let values = TokenValues {
            api_server_url: Some("https://up:6443".into()),
            api_server_ca: None,
            cluster_namespace: "fleet-default".into(),
            system_registration_namespace: REGISTRATION_NAMESPACE.into(),
            token: "secret".into(),
        };
        assert_eq!(
            TokenValues::from_data(&values.to_data()),
            Ok(values.clone())
        );
        use base64::Engine as _;
        let json = &values.to_data()[TOKEN_VALUES_KEY].0;
        let encoded = base64::engine::general_purpose::STANDARD.encode(json);
        let data = BTreeMap::from([(TOKEN_VALUES_KEY.to_owned(), ByteString(encoded.into()))]);
        assert_eq!(TokenValues::from_data(&data), Ok(values));
        assert!(TokenValues::from_data(&BTreeMap::new()).is_err());
    }
}
