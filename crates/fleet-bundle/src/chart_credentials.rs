//! Chart credentials per bundle path, as Fleet reads them: `fleet apply
//! --helm-credentials-by-path-file`, and a GitRepo's `helmSecretNameForPaths` (its Secret's
//! `secrets-path.yaml`). The file maps a bundle's path (relative to the repository root) or a
//! Go glob pattern of paths to Fleet's `bundlereader.Auth`:
//!
//! ```yaml
//! charts/app:
//!   username: user
//!   password: pass
//!   caBundle: <PEM, base64>        # Go's []byte: base64 in JSON and YAML
//!   sshPrivateKey: <PEM, base64>
//!   sshKnownHosts: <known_hosts, base64>
//!   insecureSkipVerify: false
//!   basicHTTP: false
//! ```
//!
//! A bundle takes the entry of its exact path, else of the first pattern (in lexical order)
//! that matches it, else nothing (Fleet's `setAuthByPath`). Credentials still go only where
//! the Helm repository URL regex matches ([`crate::remote_charts::credentials_apply`]).

use std::collections::BTreeMap;

use base64::Engine as _;
use fleet_api::HelmRepoAccess;
use serde::Deserialize;

use crate::remote_charts::ChartAccess;

/// Fleet's `bundlereader.Auth`, as the file spells it.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Auth {
    username: Option<String>,
    password: Option<String>,
    ca_bundle: Option<String>,
    ssh_private_key: Option<String>,
    ssh_known_hosts: Option<String>,
    insecure_skip_verify: bool,
    #[serde(rename = "basicHTTP")]
    basic_http: bool,
}

/// A credentials file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("helm credentials by path: {0}")]
    Syntax(String),
    #[error("helm credentials for {path:?}: {field} is not base64: {message}")]
    Base64 {
        path: String,
        field: &'static str,
        message: String,
    },
    #[error("helm credentials by path: {0}")]
    Pattern(#[from] crate::glob::BadPattern),
}

/// Chart access per bundle path.
#[derive(Debug, Clone, Default)]
pub struct AccessByPath(BTreeMap<String, ChartAccess>);

impl AccessByPath {
    /// Reads the file's text; `url_regex` says where credentials may go, for every entry.
    pub fn from_yaml(text: &str, url_regex: Option<&str>) -> Result<Self, CredentialsError> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let entries: BTreeMap<String, Auth> =
            serde_saphyr::from_str(text).map_err(|e| CredentialsError::Syntax(e.to_string()))?;
        let mut by_path = BTreeMap::new();
        for (path, auth) in entries {
            let decode = |field: &'static str, value: &Option<String>| {
                value
                    .as_deref()
                    .map(|v| {
                        base64::engine::general_purpose::STANDARD
                            .decode(v.trim())
                            .map_err(|e| CredentialsError::Base64 {
                                path: path.clone(),
                                field,
                                message: e.to_string(),
                            })
                    })
                    .transpose()
            };
            let access = ChartAccess {
                access: HelmRepoAccess {
                    username: auth.username.clone().filter(|u| !u.is_empty()),
                    password: auth.password.clone().filter(|p| !p.is_empty()),
                    ca_bundle: decode("caBundle", &auth.ca_bundle)?,
                    insecure_skip_tls_verify: auth.insecure_skip_verify,
                },
                url_regex: url_regex.map(str::to_owned),
                plain_http: auth.basic_http,
                ssh_private_key: decode("sshPrivateKey", &auth.ssh_private_key)?,
                ssh_known_hosts: decode("sshKnownHosts", &auth.ssh_known_hosts)?,
            };
            by_path.insert(normalize(&path).to_owned(), access);
        }
        Ok(Self(by_path))
    }

    /// The access for the bundle at `path`: its own entry, else the first matching pattern's
    /// (lexical order), else none.
    pub fn for_path(&self, path: &str) -> Result<ChartAccess, CredentialsError> {
        let path = normalize(path);
        if let Some(access) = self.0.get(path) {
            return Ok(access.clone());
        }
        for (pattern, access) in &self.0 {
            if crate::glob::matches(pattern, path)? {
                return Ok(access.clone());
            }
        }
        Ok(ChartAccess::default())
    }
}

/// A path as Fleet's walk spells it: no `./` in front, no `/` behind.
fn normalize(path: &str) -> &str {
    let path = path.strip_prefix("./").unwrap_or(path);
    let path = path.trim_end_matches('/');
    if path.is_empty() { "." } else { path }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "
charts/app:
  username: exact
  password: one
apps/*:
  username: pattern
  password: two
  caBundle: UEVN
  insecureSkipVerify: true
  basicHTTP: true
a*:
  username: later-pattern
";

    #[test]
    fn a_bundle_takes_its_own_entry_else_the_first_matching_pattern() {
        let by_path = AccessByPath::from_yaml(FILE, Some("https://")).expect("parses");
        // (bundle path, username)
        let cases = [
            ("charts/app", Some("exact")),
            ("./charts/app/", Some("exact")),
            ("apps/web", Some("pattern")),
            ("apps/web/nested", None),
            ("azure", Some("later-pattern")),
            ("other", None),
        ];
        for (path, user) in cases {
            let access = by_path.for_path(path).expect("valid patterns");
            assert_eq!(access.access.username.as_deref(), user, "{path}");
        }
        let pattern = by_path.for_path("apps/web").expect("valid");
        assert_eq!(pattern.access.ca_bundle.as_deref(), Some(&b"PEM"[..]));
        assert!(pattern.access.insecure_skip_tls_verify && pattern.plain_http);
        assert_eq!(pattern.url_regex.as_deref(), Some("https://"));
        assert!(
            by_path
                .for_path("other")
                .expect("valid")
                .url_regex
                .is_none()
        );
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let not_base64 = "app:\n  caBundle: '***'\n";
        let error = AccessByPath::from_yaml(not_base64, None).expect_err("refused");
        assert!(
            error.to_string().contains("caBundle is not base64"),
            "{error}"
        );
        assert!(AccessByPath::from_yaml("- a list", None).is_err());
        let bad_pattern = AccessByPath::from_yaml("'[':\n  username: u\n", None).expect("read");
        assert!(bad_pattern.for_path("x").is_err());
        assert!(AccessByPath::from_yaml("", None).is_ok());
    }
}
