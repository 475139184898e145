//! Push events of each git host: which provider sent a request (by header, in Fleet's order),
//! how its signature is checked, and the repository, branch and commit it announces.
//!
//! | provider | detected by | verified with (secret key) |
//! |---|---|---|
//! | Gogs, Gitea | `X-Gogs-Event` | HMAC-SHA256 hex in `X-Gogs-Signature`/`X-Gitea-Signature` (`gogs`) |
//! | GitHub | `X-GitHub-Event` | `X-Hub-Signature-256: sha256=<hex>` (`github`) |
//! | GitLab | `X-Gitlab-Event` | `X-Gitlab-Token` equal to the secret (`gitlab`) |
//! | Bitbucket Cloud | `X-Hook-UUID` | the hook UUID equal to the secret (`bitbucket`) |
//! | Bitbucket Server | `X-Event-Key` | `X-Hub-Signature: sha256=<hex>` (`bitbucket-server`) |
//! | Azure DevOps | `X-Vss-Activityid` | basic auth (`azure-username`, `azure-password`) |

use axum::http::HeaderMap;
use base64::Engine as _;
use hmac::{Hmac, KeyInit as _, Mac as _};
use serde_json::Value;
use sha2::Sha256;

/// A git host that sends push webhooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Gogs,
    GitHub,
    GitLab,
    Bitbucket,
    BitbucketServer,
    Azure,
}

impl Provider {
    /// Which provider sent these headers.
    pub fn detect(headers: &HeaderMap) -> Option<Self> {
        let has = |name: &str| headers.contains_key(name);
        if has("x-gogs-event") {
            Some(Self::Gogs)
        } else if has("x-github-event") {
            Some(Self::GitHub)
        } else if has("x-gitlab-event") {
            Some(Self::GitLab)
        } else if has("x-hook-uuid") {
            Some(Self::Bitbucket)
        } else if has("x-event-key") {
            Some(Self::BitbucketServer)
        } else if has("x-vss-activityid") || has("x-vss-subscriptionid") {
            Some(Self::Azure)
        } else {
            None
        }
    }

    /// The name in metrics and logs, and the key of its secret in the webhook Secret.
    pub fn name(self) -> &'static str {
        match self {
            Self::Gogs => "gogs",
            Self::GitHub => "github",
            Self::GitLab => "gitlab",
            Self::Bitbucket => "bitbucket",
            Self::BitbucketServer => "bitbucket-server",
            Self::Azure => "azure",
        }
    }

    /// The Secret keys this provider's verification reads.
    pub fn secret_keys(self) -> &'static [&'static str] {
        match self {
            Self::Azure => &["azure-username", "azure-password"],
            other => match other {
                Self::Gogs => &["gogs"],
                Self::GitHub => &["github"],
                Self::GitLab => &["gitlab"],
                Self::Bitbucket => &["bitbucket"],
                _ => &["bitbucket-server"],
            },
        }
    }

    /// Whether the request is signed with `secret` (the values of [`secret_keys`](Self::secret_keys)).
    pub fn verify(self, headers: &HeaderMap, body: &[u8], secret: &[String]) -> bool {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let Some(first) = secret.first() else {
            return false;
        };
        match self {
            Self::Gogs => header("x-gogs-signature")
                .or_else(|| header("x-gitea-signature"))
                .is_some_and(|sig| hmac_matches(first, body, sig)),
            Self::GitHub => header("x-hub-signature-256")
                .and_then(|sig| sig.strip_prefix("sha256="))
                .is_some_and(|sig| hmac_matches(first, body, sig)),
            Self::BitbucketServer => header("x-hub-signature")
                .and_then(|sig| sig.strip_prefix("sha256="))
                .is_some_and(|sig| hmac_matches(first, body, sig)),
            Self::GitLab => header("x-gitlab-token").is_some_and(|t| constant_eq(t, first)),
            Self::Bitbucket => header("x-hook-uuid").is_some_and(|t| constant_eq(t, first)),
            Self::Azure => {
                let expected = format!("{first}:{}", secret.get(1).map_or("", String::as_str));
                header("authorization")
                    .and_then(|auth| auth.strip_prefix("Basic "))
                    .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
                    .is_some_and(|decoded| constant_eq_bytes(&decoded, expected.as_bytes()))
            }
        }
    }

    /// The push announced by the payload, `Ok(None)` for events that are not pushes.
    pub fn parse(self, headers: &HeaderMap, body: &[u8]) -> Result<Option<Push>, String> {
        let payload: Value =
            serde_json::from_slice(body).map_err(|e| format!("payload is not JSON: {e}"))?;
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let is_push = match self {
            Self::GitHub => header("x-github-event") == "push",
            Self::Gogs => header("x-gogs-event") == "push",
            Self::GitLab => matches!(
                header("x-gitlab-event").as_str(),
                "Push Hook" | "Tag Push Hook"
            ),
            Self::Bitbucket => header("x-event-key") == "repo:push",
            Self::BitbucketServer => header("x-event-key") == "repo:refs_changed",
            Self::Azure => text(&payload, "/eventType").as_deref() == Some("git.push"),
        };
        if !is_push {
            return Ok(None);
        }
        let push = match self {
            Self::GitHub | Self::Gogs => github_push(&payload),
            Self::GitLab => gitlab_push(&payload),
            Self::Bitbucket => bitbucket_push(&payload),
            Self::BitbucketServer => bitbucket_server_push(&payload)?,
            Self::Azure => azure_push(&payload)?,
        };
        push.map(Some)
            .ok_or_else(|| "payload has no ref, commit or repository".to_owned())
    }
}

/// The string at `pointer` in `value`.
fn text(value: &Value, pointer: &str) -> Option<String> {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// The strings at `pointers` in `payload` (repository URLs).
fn urls(payload: &Value, pointers: &[&str]) -> Vec<String> {
    pointers.iter().filter_map(|p| text(payload, p)).collect()
}

/// GitHub's and Gogs/Gitea's `push`.
fn github_push(payload: &Value) -> Option<Push> {
    Push::from_ref(
        text(payload, "/ref"),
        text(payload, "/after"),
        urls(
            payload,
            &[
                "/repository/html_url",
                "/repository/clone_url",
                "/repository/ssh_url",
                "/repository/git_url",
            ],
        ),
    )
}

/// GitLab's `Push Hook` and `Tag Push Hook`.
fn gitlab_push(payload: &Value) -> Option<Push> {
    Push::from_ref(
        text(payload, "/ref"),
        text(payload, "/checkout_sha").or_else(|| text(payload, "/after")),
        urls(
            payload,
            &[
                "/project/web_url",
                "/project/git_http_url",
                "/project/git_ssh_url",
                "/repository/homepage",
                "/repository/git_http_url",
                "/repository/git_ssh_url",
            ],
        ),
    )
}

/// Bitbucket Cloud's `repo:push`: the first change with a new head.
fn bitbucket_push(payload: &Value) -> Option<Push> {
    let new = payload
        .pointer("/push/changes")
        .and_then(Value::as_array)?
        .iter()
        .find_map(|c| c.get("new").filter(|n| !n.is_null()))?;
    let branch = (text(new, "/type").as_deref() == Some("branch"))
        .then(|| text(new, "/name"))
        .flatten();
    Some(Push {
        branch,
        commit: text(new, "/target/hash")?,
        repo_urls: urls(payload, &["/repository/links/html/href"]),
    })
}

/// Bitbucket Server's `repo:refs_changed`: its first change.
fn bitbucket_server_push(payload: &Value) -> Result<Option<Push>, String> {
    let change = payload
        .pointer("/changes/0")
        .ok_or("payload has no changes")?;
    let mut repo_urls: Vec<String> = payload
        .pointer("/repository/links/clone")
        .and_then(Value::as_array)
        .map(|links| links.iter().filter_map(|l| text(l, "/href")).collect())
        .unwrap_or_default();
    repo_urls.extend(urls(payload, &["/repository/links/self/0/href"]));
    Ok(Push::from_ref(
        text(change, "/refId"),
        text(change, "/toHash"),
        repo_urls,
    ))
}

/// Azure DevOps' `git.push`: its first ref update.
fn azure_push(payload: &Value) -> Result<Option<Push>, String> {
    let update = payload
        .pointer("/resource/refUpdates/0")
        .ok_or("payload has no refUpdates")?;
    Ok(Push::from_ref(
        text(update, "/name"),
        text(update, "/newObjectId"),
        urls(
            payload,
            &[
                "/resource/repository/remoteUrl",
                "/resource/repository/sshUrl",
            ],
        ),
    ))
}

/// What a push webhook announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    /// Every URL the payload gives for the repository.
    pub repo_urls: Vec<String>,
    /// The pushed branch (`None` for a tag).
    pub branch: Option<String>,
    pub commit: String,
}

impl Push {
    fn from_ref(
        reference: Option<String>,
        commit: Option<String>,
        repo_urls: Vec<String>,
    ) -> Option<Self> {
        let reference = reference?;
        let branch = reference.strip_prefix("refs/heads/").map(str::to_owned);
        let commit = commit?;
        (!repo_urls.is_empty()).then_some(Self {
            repo_urls,
            branch,
            commit,
        })
    }

    /// A push that deleted the branch (all-zero commit).
    pub fn is_deletion(&self) -> bool {
        self.commit.chars().all(|c| c == '0')
    }
}

/// A repository URL in a form where https, ssh and scp-like spellings of the same repository
/// are equal: no scheme, user or `.git`, lower-case host.
pub fn normalize_url(url: &str) -> String {
    let url = url.trim();
    let rest = match url.split_once("://") {
        Some((_, rest)) => rest.to_owned(),
        // scp-like: user@host:path
        None => url.replacen(':', "/", 1),
    };
    let rest = rest
        .rsplit_once('@')
        .map_or(rest.as_str(), |(_, host)| host);
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let path = path.trim_end_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    format!("{}/{}", host.to_lowercase(), path)
}

fn hmac_matches(secret: &str, body: &[u8], hex_signature: &str) -> bool {
    let Some(expected) = decode_hex(hex_signature) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

fn constant_eq(a: &str, b: &str) -> bool {
    constant_eq_bytes(a.as_bytes(), b.as_bytes())
}

fn constant_eq_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The hex HMAC-SHA256 of `body` with `secret`, as GitHub, Gogs and Bitbucket Server sign.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use serde_json::json;

    use super::*;

    fn headers(entries: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in entries {
            map.insert(*name, HeaderValue::from_str(value).expect("header"));
        }
        map
    }

    #[test]
    fn urls_normalize_across_spellings() {
        let want = "github.com/org/repo";
        for url in [
            "https://github.com/org/repo",
            "https://github.com/org/repo.git",
            "git@github.com:org/repo.git",
            "ssh://git@github.com/org/repo",
            "https://user:pw@GitHub.com/org/repo/",
        ] {
            assert_eq!(normalize_url(url), want, "{url}");
        }
        assert_eq!(
            normalize_url("http://127.0.0.1:8080/r.git"),
            "127.0.0.1:8080/r"
        );
    }

    #[test]
    fn github_pushes_are_parsed_and_verified() {
        let body = json!({
            "ref": "refs/heads/main",
            "after": "abc",
            "repository": {"html_url": "https://github.com/org/repo", "clone_url": "https://github.com/org/repo.git"}
        })
        .to_string();
        let signature = format!("sha256={}", sign("s3cret", body.as_bytes()));
        let h = headers(&[
            ("x-github-event", "push"),
            ("x-hub-signature-256", &signature),
        ]);
        let provider = Provider::detect(&h).expect("detected");
        assert_eq!(provider, Provider::GitHub);
        assert!(provider.verify(&h, body.as_bytes(), &["s3cret".to_owned()]));
        assert!(!provider.verify(&h, body.as_bytes(), &["other".to_owned()]));
        assert!(!provider.verify(&h, b"tampered", &["s3cret".to_owned()]));
        let push = provider
            .parse(&h, body.as_bytes())
            .expect("parse")
            .expect("push");
        assert_eq!(push.branch.as_deref(), Some("main"));
        assert_eq!(push.commit, "abc");
        let ping = headers(&[("x-github-event", "ping")]);
        assert_eq!(provider.parse(&ping, b"{}"), Ok(None));
    }

    #[test]
    fn gitea_is_handled_as_gogs() {
        let body = br#"{"ref":"refs/heads/master","after":"c1","repository":{"clone_url":"http://gitea/r.git"}}"#;
        let h = headers(&[
            ("x-gogs-event", "push"),
            ("x-github-event", "push"),
            ("x-gitea-signature", &sign("k", body)),
        ]);
        let provider = Provider::detect(&h).expect("detected");
        assert_eq!(provider, Provider::Gogs);
        assert!(provider.verify(&h, body, &["k".to_owned()]));
    }

    #[test]
    fn gitlab_bitbucket_and_azure_payloads_parse() {
        let gitlab = headers(&[("x-gitlab-event", "Push Hook"), ("x-gitlab-token", "t")]);
        let body = br#"{"ref":"refs/heads/main","checkout_sha":"c2","project":{"git_http_url":"https://gitlab.com/g/r.git"}}"#;
        assert!(Provider::GitLab.verify(&gitlab, body, &["t".to_owned()]));
        let push = Provider::GitLab
            .parse(&gitlab, body)
            .expect("ok")
            .expect("push");
        assert_eq!(push.commit, "c2");

        let bitbucket = headers(&[("x-hook-uuid", "u-1"), ("x-event-key", "repo:push")]);
        let body = br#"{"push":{"changes":[{"new":{"type":"branch","name":"main","target":{"hash":"c3"}}}]},"repository":{"links":{"html":{"href":"https://bitbucket.org/o/r"}}}}"#;
        assert_eq!(Provider::detect(&bitbucket), Some(Provider::Bitbucket));
        assert!(Provider::Bitbucket.verify(&bitbucket, body, &["u-1".to_owned()]));
        let push = Provider::Bitbucket
            .parse(&bitbucket, body)
            .expect("ok")
            .expect("push");
        assert_eq!(
            (push.branch.as_deref(), push.commit.as_str()),
            (Some("main"), "c3")
        );

        let server_body = br#"{"changes":[{"refId":"refs/heads/main","toHash":"c4"}],"repository":{"links":{"clone":[{"href":"ssh://git@bb.local:7999/p/r.git"}]}}}"#;
        let server = headers(&[
            ("x-event-key", "repo:refs_changed"),
            (
                "x-hub-signature",
                &format!("sha256={}", sign("bs", server_body)),
            ),
        ]);
        assert_eq!(Provider::detect(&server), Some(Provider::BitbucketServer));
        assert!(Provider::BitbucketServer.verify(&server, server_body, &["bs".to_owned()]));
        let push = Provider::BitbucketServer
            .parse(&server, server_body)
            .expect("ok")
            .expect("push");
        assert_eq!(push.commit, "c4");

        let auth = base64::engine::general_purpose::STANDARD.encode("user:pass");
        let azure = headers(&[
            ("x-vss-activityid", "1"),
            ("authorization", &format!("Basic {auth}")),
        ]);
        let body = br#"{"eventType":"git.push","resource":{"refUpdates":[{"name":"refs/heads/main","newObjectId":"c5"}],"repository":{"remoteUrl":"https://dev.azure.com/o/p/_git/r"}}}"#;
        assert!(Provider::Azure.verify(&azure, body, &["user".to_owned(), "pass".to_owned()]));
        assert!(!Provider::Azure.verify(&azure, body, &["user".to_owned(), "nope".to_owned()]));
        let push = Provider::Azure
            .parse(&azure, body)
            .expect("ok")
            .expect("push");
        assert_eq!(push.commit, "c5");
    }
}
