//! A GitRepo's git credentials, as Fleet reads them: the Secret named by
//! `spec.clientSecretName`, or else the `gitcredential` Secret of the GitRepo's namespace if
//! there is one.
//!
//! - `kubernetes.io/basic-auth` (or any Secret with `username`/`password`): HTTP basic auth;
//! - `kubernetes.io/ssh-auth` (or any Secret with `ssh-privatekey`): an ssh key, with the
//!   host keys of its `known_hosts` entry checked strictly.

use k8s_openapi::api::core::v1::Secret;
use kube::Api;

use crate::git::Auth;
use crate::known_hosts::KnownHosts;

/// The Secret Fleet uses when a GitRepo names none.
pub const DEFAULT_SECRET: &str = "gitcredential";

/// Why a GitRepo's credentials could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("secret {namespace}/{name} not found")]
    NotFound { namespace: String, name: String },
    #[error("secret {namespace}/{name}: {message}")]
    Invalid {
        namespace: String,
        name: String,
        message: String,
    },
    #[error("reading secret {namespace}/{name}: {source}")]
    Api {
        namespace: String,
        name: String,
        source: kube::Error,
    },
}

/// The credentials for a GitRepo in `namespace` with `client_secret_name`.
pub async fn load(
    secrets: &Api<Secret>,
    namespace: &str,
    client_secret_name: Option<&str>,
) -> Result<Auth, CredentialsError> {
    let name = client_secret_name.unwrap_or(DEFAULT_SECRET);
    let secret = secrets
        .get_opt(name)
        .await
        .map_err(|source| CredentialsError::Api {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            source,
        })?;
    match secret {
        Some(secret) => from_secret(&secret).map_err(|message| CredentialsError::Invalid {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            message,
        }),
        None if client_secret_name.is_none() => Ok(Auth::Anonymous),
        None => Err(CredentialsError::NotFound {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }),
    }
}

/// The credentials a Secret holds.
pub fn from_secret(secret: &Secret) -> Result<Auth, String> {
    let value = |key: &str| -> Result<Option<String>, String> {
        secret
            .data
            .as_ref()
            .and_then(|data| data.get(key))
            .map(|bytes| {
                String::from_utf8(bytes.0.clone()).map_err(|_| format!("{key} is not UTF-8 text"))
            })
            .transpose()
    };
    if let Some(private_key) = value("ssh-privatekey")? {
        let known_hosts = value("known_hosts")?.map(|text| KnownHosts::parse(&text));
        return Ok(Auth::Ssh {
            private_key,
            known_hosts,
        });
    }
    match (value("username")?, value("password")?) {
        (Some(username), Some(password)) => Ok(Auth::Basic { username, password }),
        (None, Some(password)) => Ok(Auth::Basic {
            username: String::new(),
            password,
        }),
        _ if value("github_app_id")?.is_some() => {
            Err("GitHub App credentials are not supported yet".to_owned())
        }
        _ => Err("holds neither username/password nor ssh-privatekey".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::ByteString;

    use super::*;

    fn secret(entries: &[(&str, &str)]) -> Secret {
        Secret {
            data: Some(
                entries
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..Secret::default()
        }
    }

    #[test]
    fn basic_auth_and_ssh_keys_are_recognised() {
        assert!(matches!(
            from_secret(&secret(&[("username", "u"), ("password", "p")])),
            Ok(Auth::Basic { username, .. }) if username == "u"
        ));
        assert!(matches!(
            from_secret(&secret(&[("ssh-privatekey", "KEY"), ("known_hosts", "h ssh-rsa AQID")])),
            Ok(Auth::Ssh { known_hosts: Some(k), .. }) if !k.is_empty()
        ));
        assert!(from_secret(&secret(&[("token", "x")])).is_err());
    }
}
