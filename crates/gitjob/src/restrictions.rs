//! GitRepoRestriction: what GitRepos of a namespace may use, enforced before anything is
//! fetched, as Fleet's gitjob does. All restrictions of the namespace count together (their
//! allow-lists are joined; the first default set wins, in name order). With none, anything
//! goes.
//!
//! - `serviceAccount`: `defaultServiceAccount` when unset; must be in `allowedServiceAccounts`.
//! - `clientSecretName`: `defaultClientSecretName` when unset; must be in
//!   `allowedClientSecretNames`.
//! - `repo`: must equal or match (unanchored, as Fleet) one of `allowedRepoPatterns`.
//! - `targetNamespace`: must be set and in `allowedTargetNamespaces` when that is given;
//! - `allowedTargetNamespaceSelector`: passed on to the bundles, checked by the agent.
//!
//! Pure.

use fleet_api::{GitRepoRestriction, GitRepoSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// A GitRepo the restrictions allow.
#[derive(Debug, Clone, PartialEq)]
pub struct Authorized {
    /// Its spec with the restrictions' defaults filled in.
    pub spec: GitRepoSpec,
    /// `allowedTargetNamespaceSelector`: the namespaces its bundles may deploy into (checked
    /// by the agent).
    pub allowed_target_namespace_selector: Option<LabelSelector>,
}

/// The GitRepo as the restrictions allow it, or why they refuse it.
pub fn authorize(
    restrictions: &[&GitRepoRestriction],
    spec: &GitRepoSpec,
) -> Result<Authorized, String> {
    let mut spec = spec.clone();
    if restrictions.is_empty() {
        return Ok(Authorized {
            spec,
            allowed_target_namespace_selector: None,
        });
    }
    let mut ordered = restrictions.to_vec();
    ordered.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let first = |field: fn(&GitRepoRestriction) -> Option<&String>| {
        ordered
            .iter()
            .find_map(|r| field(r).filter(|v| !v.is_empty()).cloned())
    };
    let joined = |field: fn(&GitRepoRestriction) -> &Vec<String>| -> Vec<String> {
        ordered
            .iter()
            .flat_map(|r| field(r).iter().cloned())
            .collect()
    };
    if spec.service_account.as_deref().is_none_or(str::is_empty) {
        spec.service_account = first(|r| r.default_service_account.as_ref());
    }
    if spec.client_secret_name.as_deref().is_none_or(str::is_empty) {
        spec.client_secret_name = first(|r| r.default_client_secret_name.as_ref());
    }
    allowed(
        "serviceAccount",
        spec.service_account.as_deref(),
        &joined(|r| &r.allowed_service_accounts),
    )?;
    allowed(
        "clientSecretName",
        spec.client_secret_name.as_deref(),
        &joined(|r| &r.allowed_client_secret_names),
    )?;
    let namespaces = joined(|r| &r.allowed_target_namespaces);
    if !namespaces.is_empty() {
        match spec.target_namespace.as_deref().filter(|n| !n.is_empty()) {
            None => {
                return Err(
                    "empty targetNamespace denied: a GitRepoRestriction allows only \
                            the target namespaces "
                        .to_owned()
                        + &namespaces.join(", "),
                );
            }
            Some(namespace) if !namespaces.iter().any(|n| n == namespace) => {
                return Err(format!(
                    "disallowed targetNamespace {namespace}: a GitRepoRestriction allows {}",
                    namespaces.join(", ")
                ));
            }
            Some(_) => {}
        }
    }
    let patterns = joined(|r| &r.allowed_repo_patterns);
    if !patterns.is_empty() && !patterns.iter().any(|p| repo_matches(p, &spec.repo)) {
        return Err(format!(
            "disallowed repo {}: a GitRepoRestriction allows only repos matching {}",
            crate::git::redact_url(&spec.repo),
            patterns.join(", ")
        ));
    }
    let allowed_target_namespace_selector = ordered
        .iter()
        .find_map(|r| r.allowed_target_namespace_selector.clone());
    Ok(Authorized {
        spec,
        allowed_target_namespace_selector,
    })
}

/// A set value must be in a non-empty allow-list (an unset one is not checked, as in Fleet).
fn allowed(field: &str, value: Option<&str>, list: &[String]) -> Result<(), String> {
    match value.filter(|v| !v.is_empty()) {
        Some(value) if !list.is_empty() && !list.iter().any(|a| a == value) => Err(format!(
            "disallowed {field} {value}: a GitRepoRestriction allows {}",
            list.join(", ")
        )),
        _ => Ok(()),
    }
}

fn repo_matches(pattern: &str, repo: &str) -> bool {
    pattern == repo || regex::Regex::new(pattern).is_ok_and(|re| re.is_match(repo))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn restriction(name: &str, yaml: &str) -> GitRepoRestriction {
        let text = format!(
            "apiVersion: fleet.cattle.io/v1alpha1\nkind: GitRepoRestriction\nmetadata:\n  name: {name}\n{yaml}"
        );
        serde_saphyr::from_str(&text).expect("restriction")
    }

    fn spec(repo: &str) -> GitRepoSpec {
        GitRepoSpec {
            repo: repo.to_owned(),
            ..GitRepoSpec::default()
        }
    }

    #[test]
    fn without_restrictions_anything_goes() {
        let allowed = authorize(&[], &spec("https://x/y")).expect("allowed");
        assert_eq!(allowed.spec, spec("https://x/y"));
        assert_eq!(allowed.allowed_target_namespace_selector, None);
    }

    #[test]
    fn defaults_are_filled_in_and_allow_lists_enforced() {
        let r = restriction(
            "a",
            "defaultServiceAccount: deployer\nallowedServiceAccounts: [deployer]\ndefaultClientSecretName: git-creds\nallowedRepoPatterns: ['^https://git\\.example\\.com/']\n",
        );
        let ok = authorize(&[&r], &spec("https://git.example.com/team/app"))
            .expect("allowed")
            .spec;
        assert_eq!(ok.service_account.as_deref(), Some("deployer"));
        assert_eq!(ok.client_secret_name.as_deref(), Some("git-creds"));
        let error = authorize(&[&r], &spec("https://github.com/evil/app")).expect_err("repo");
        assert!(
            error.starts_with("disallowed repo https://github.com/evil/app"),
            "{error}"
        );
        let mut admin = spec("https://git.example.com/team/app");
        admin.service_account = Some("cluster-admin".to_owned());
        let error = authorize(&[&r], &admin).expect_err("service account");
        assert_eq!(
            error,
            "disallowed serviceAccount cluster-admin: a GitRepoRestriction allows deployer"
        );
    }

    #[test]
    fn target_namespaces_must_be_set_and_allowed_and_lists_join() {
        let a = restriction("a", "allowedTargetNamespaces: [apps]\n");
        let b = restriction("b", "allowedTargetNamespaces: [tools]\n");
        let mut s = spec("https://x/y");
        assert!(
            authorize(&[&a, &b], &s)
                .expect_err("unset")
                .starts_with("empty targetNamespace")
        );
        s.target_namespace = Some("tools".to_owned());
        assert!(
            authorize(&[&a, &b], &s).is_ok(),
            "allowed by the second restriction"
        );
        s.target_namespace = Some("kube-system".to_owned());
        assert!(authorize(&[&a, &b], &s).is_err());
    }
}
