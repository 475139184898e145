//! Git with libgit2, blocking (callers run it in `spawn_blocking`): resolving a branch or
//! revision to a commit without a clone (ls-remote), fetching into a bare cache repository
//! per URL, and exporting the tree at a commit to a directory for `fleet-bundle`.
//!
//! libgit2 asks again for credentials after every rejection, so the credentials callback
//! answers once per kind and then fails with an authentication error. Credentials never
//! appear in errors or logs; URLs are shown without their user information.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use git2::{
    CertificateCheckStatus, Cred, CredentialType, Direction, ErrorClass, ErrorCode, FetchOptions,
    ObjectType, Oid, RemoteCallbacks, Repository, TreeWalkMode, TreeWalkResult,
};
use sha2::{Digest as _, Sha256};

use crate::known_hosts::KnownHosts;

/// Which commit of a repository to deploy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// The head of a branch.
    Branch(String),
    /// A commit SHA, a tag or a branch name (Fleet's `revision`).
    Revision(String),
}

/// How to authenticate to the repository.
#[derive(Clone, Default)]
pub enum Auth {
    #[default]
    Anonymous,
    Basic {
        username: String,
        password: String,
    },
    Ssh {
        private_key: String,
        known_hosts: Option<KnownHosts>,
    },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets.
        f.write_str(match self {
            Self::Anonymous => "Anonymous",
            Self::Basic { .. } => "Basic(..)",
            Self::Ssh { .. } => "Ssh(..)",
        })
    }
}

/// A repository to read.
#[derive(Debug, Clone)]
pub struct Source {
    pub url: String,
    pub reference: Reference,
    pub auth: Auth,
    pub insecure_skip_tls_verify: bool,
    /// PEM CA certificates the server's certificate must chain to (a GitRepo's `caBundle`),
    /// instead of the system's.
    pub ca_bundle: Option<Vec<u8>>,
}

/// Why a git operation failed, in words for a GitRepo's status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GitError {
    #[error("authentication to {url} failed: check the credentials secret")]
    Auth { url: String },
    #[error("branch {branch:?} not found in {url}")]
    BranchNotFound { url: String, branch: String },
    #[error("revision {revision:?} not found in {url}")]
    RevisionNotFound { url: String, revision: String },
    #[error("host key of {host} is not in known_hosts")]
    HostKey { host: String },
    #[error("{url}: {message}")]
    Remote { url: String, message: String },
    #[error("git cache {}: {message}", path.display())]
    Cache { path: PathBuf, message: String },
    #[error("cancelled")]
    Cancelled,
}

impl Source {
    /// The URL without user information, for messages.
    pub fn display_url(&self) -> String {
        redact_url(&self.url)
    }

    fn remote_error(&self, error: &git2::Error) -> GitError {
        let url = self.display_url();
        if error.code() == ErrorCode::Auth {
            GitError::Auth { url }
        } else if error.code() == ErrorCode::User {
            GitError::Cancelled
        } else if error.code() == ErrorCode::Certificate && error.class() == ErrorClass::Ssh {
            GitError::HostKey {
                host: host_of(&self.url),
            }
        } else {
            GitError::Remote {
                url,
                message: error.message().to_owned(),
            }
        }
    }
}

/// The commit `source.reference` points at now, without cloning (ls-remote). A full commit
/// SHA is returned as it is.
pub fn resolve(source: &Source, cancel: &AtomicBool) -> Result<String, GitError> {
    if let Reference::Revision(revision) = &source.reference
        && is_full_sha(revision)
    {
        return Ok(revision.to_lowercase());
    }
    let mut remote =
        git2::Remote::create_detached(source.url.as_str()).map_err(|e| source.remote_error(&e))?;
    let connection = remote
        .connect_auth(Direction::Fetch, Some(callbacks(source, cancel)), None)
        .map_err(|e| source.remote_error(&e))?;
    let heads: Vec<(String, Oid)> = connection
        .list()
        .map_err(|e| source.remote_error(&e))?
        .iter()
        .map(|head| (head.name().to_owned(), head.oid()))
        .collect();
    let find = |name: &str| heads.iter().find(|(n, _)| n == name).map(|(_, oid)| *oid);
    let url = source.display_url();
    match &source.reference {
        Reference::Branch(branch) => find(&format!("refs/heads/{branch}"))
            .map(|oid| oid.to_string())
            .ok_or_else(|| GitError::BranchNotFound {
                url,
                branch: branch.clone(),
            }),
        Reference::Revision(revision) => find(&format!("refs/tags/{revision}^{{}}"))
            .or_else(|| find(&format!("refs/tags/{revision}")))
            .or_else(|| find(&format!("refs/heads/{revision}")))
            .map(|oid| oid.to_string())
            .ok_or_else(|| GitError::RevisionNotFound {
                url,
                revision: revision.clone(),
            }),
    }
}

/// Makes sure `commit` is in the bare cache repository for `source.url` under `cache_root`,
/// fetching only when it is not; returns the cache repository's path.
pub fn fetch(
    cache_root: &Path,
    source: &Source,
    commit: &str,
    cancel: &AtomicBool,
) -> Result<PathBuf, GitError> {
    let path = cache_root.join(cache_name(&source.url));
    let cache_error = |e: git2::Error| GitError::Cache {
        path: path.clone(),
        message: e.message().to_owned(),
    };
    let repo = match Repository::open_bare(&path) {
        Ok(repo) => repo,
        Err(_) => Repository::init_bare(&path).map_err(cache_error)?,
    };
    let oid = Oid::from_str(commit).map_err(|_| GitError::RevisionNotFound {
        url: source.display_url(),
        revision: commit.to_owned(),
    })?;
    if repo.find_commit(oid).is_ok() {
        return Ok(path);
    }
    let refspecs: Vec<String> = match &source.reference {
        Reference::Branch(branch) => vec![format!("+refs/heads/{branch}:refs/heads/{branch}")],
        Reference::Revision(_) => vec![
            "+refs/heads/*:refs/heads/*".to_owned(),
            "+refs/tags/*:refs/tags/*".to_owned(),
        ],
    };
    let mut remote = repo
        .remote_anonymous(&source.url)
        .map_err(|e| source.remote_error(&e))?;
    let mut options = FetchOptions::new();
    options.remote_callbacks(callbacks(source, cancel));
    remote
        .fetch(&refspecs, Some(&mut options), None)
        .map_err(|e| source.remote_error(&e))?;
    if repo.find_commit(oid).is_err() {
        return Err(GitError::RevisionNotFound {
            url: source.display_url(),
            revision: commit.to_owned(),
        });
    }
    Ok(path)
}

/// Writes the tree of `commit` in the repository at `repo_path` below `dest` (regular and
/// executable files; symbolic links are skipped, as they could point outside, and submodules
/// are exported by the `submodules` module).
/// Blobs larger than `max_blob` bytes are not read (their size comes from the object
/// header): they become sparse files of that size, which the bundle reader then refuses by
/// size with their path, so that an oversized file costs no memory however often a sync is
/// retried.
pub fn export(repo_path: &Path, commit: &str, dest: &Path, max_blob: u64) -> Result<(), GitError> {
    let cache_error = |message: String| GitError::Cache {
        path: repo_path.to_owned(),
        message,
    };
    let repo = open_cache(repo_path)?;
    let tree = commit_tree(&repo, repo_path, commit)?;
    let odb = repo
        .odb()
        .map_err(|e| cache_error(e.message().to_owned()))?;
    let mut failure = None;
    tree.walk(TreeWalkMode::PreOrder, |parent, entry| {
        let Ok(name) = entry.name() else {
            return TreeWalkResult::Skip;
        };
        let path = dest.join(parent).join(name);
        let result = match entry.kind() {
            Some(ObjectType::Tree) => std::fs::create_dir_all(&path),
            // 0o120000: a symbolic link; 0o160000 (a commit): a submodule.
            Some(ObjectType::Blob) if entry.filemode() != 0o120000 => {
                match odb.read_header(entry.id()) {
                    Ok((size, _)) if size as u64 > max_blob => {
                        std::fs::File::create(&path).and_then(|file| file.set_len(size as u64))
                    }
                    _ => repo
                        .find_blob(entry.id())
                        .map_err(|e| std::io::Error::other(e.message().to_owned()))
                        .and_then(|blob| std::fs::write(&path, blob.content())),
                }
            }
            _ => Ok(()),
        };
        match result {
            Ok(()) => TreeWalkResult::Ok,
            Err(e) => {
                failure = Some(format!("{}: {e}", path.display()));
                TreeWalkResult::Abort
            }
        }
    })
    .map_err(|e| cache_error(e.message().to_owned()))?;
    match failure {
        Some(message) => Err(cache_error(message)),
        None => Ok(()),
    }
}

/// The bare cache repository at `repo_path`.
pub(crate) fn open_cache(repo_path: &Path) -> Result<Repository, GitError> {
    Repository::open_bare(repo_path).map_err(|e| GitError::Cache {
        path: repo_path.to_owned(),
        message: e.message().to_owned(),
    })
}

/// The tree of `commit` in `repo` (the cache at `repo_path`).
pub(crate) fn commit_tree<'r>(
    repo: &'r Repository,
    repo_path: &Path,
    commit: &str,
) -> Result<git2::Tree<'r>, GitError> {
    Oid::from_str(commit)
        .and_then(|oid| repo.find_commit(oid))
        .and_then(|c| c.tree())
        .map_err(|e| GitError::Cache {
            path: repo_path.to_owned(),
            message: e.message().to_owned(),
        })
}

fn callbacks<'a>(source: &'a Source, cancel: &'a AtomicBool) -> RemoteCallbacks<'a> {
    let mut callbacks = RemoteCallbacks::new();
    let mut asked = CredentialType::empty();
    callbacks.credentials(move |_url, username, allowed| {
        let rejected = || {
            Err(git2::Error::new(
                ErrorCode::Auth,
                ErrorClass::Callback,
                "credentials rejected",
            ))
        };
        // A second request for the same kind means the first answer was rejected.
        let kind = allowed & !asked;
        match &source.auth {
            Auth::Basic { username, password }
                if kind.contains(CredentialType::USER_PASS_PLAINTEXT) =>
            {
                asked |= CredentialType::USER_PASS_PLAINTEXT;
                Cred::userpass_plaintext(username, password)
            }
            Auth::Ssh { private_key, .. } if kind.contains(CredentialType::SSH_KEY) => {
                asked |= CredentialType::SSH_KEY;
                Cred::ssh_key_from_memory(username.unwrap_or("git"), None, private_key, None)
            }
            Auth::Ssh { .. } if kind.contains(CredentialType::USERNAME) => {
                asked |= CredentialType::USERNAME;
                Cred::username(username.unwrap_or("git"))
            }
            _ => rejected(),
        }
    });
    callbacks.certificate_check(move |cert, host| {
        if let Some(hostkey) = cert.as_hostkey() {
            return match &source.auth {
                Auth::Ssh {
                    known_hosts: Some(known),
                    ..
                } => {
                    let key_type = hostkey.hostkey_type().map(|t| t.name());
                    match (key_type, hostkey.hostkey()) {
                        (Some(key_type), Some(key)) if known.allows(host, key_type, key) => {
                            Ok(CertificateCheckStatus::CertificateOk)
                        }
                        _ => Err(git2::Error::new(
                            ErrorCode::Certificate,
                            ErrorClass::Ssh,
                            "host key not in known_hosts",
                        )),
                    }
                }
                // Without known_hosts in the secret, libgit2 checks ~/.ssh/known_hosts.
                _ => Ok(CertificateCheckStatus::CertificatePassthrough),
            };
        }
        if source.insecure_skip_tls_verify {
            return Ok(CertificateCheckStatus::CertificateOk);
        }
        match (&source.ca_bundle, cert.as_x509()) {
            (Some(bundle), Some(x509)) => match crate::tls::verify(bundle, x509.data(), host) {
                Ok(()) => Ok(CertificateCheckStatus::CertificateOk),
                Err(message) => Err(git2::Error::new(
                    ErrorCode::Certificate,
                    ErrorClass::Ssl,
                    message,
                )),
            },
            _ => Ok(CertificateCheckStatus::CertificatePassthrough),
        }
    });
    callbacks.transfer_progress(move |_| !cancel.load(Ordering::Relaxed));
    callbacks.sideband_progress(move |_| !cancel.load(Ordering::Relaxed));
    callbacks
}

fn is_full_sha(text: &str) -> bool {
    text.len() == 40 && text.chars().all(|c| c.is_ascii_hexdigit())
}

/// The cache directory name for a URL: readable, and unique by hash.
pub(crate) fn cache_name(url: &str) -> String {
    let digest = Sha256::digest(url.as_bytes());
    let hash: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let tail: String = url
        .rsplit('/')
        .find(|part| !part.is_empty())
        .unwrap_or("repo")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(40)
        .collect();
    format!("{tail}-{hash}")
}

/// `url` without `user:password@`.
pub fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
            let host = authority.rsplit('@').next().unwrap_or(authority);
            if path.is_empty() && !rest.contains('/') {
                format!("{scheme}://{host}")
            } else {
                format!("{scheme}://{host}/{path}")
            }
        }
        None => url.to_owned(),
    }
}

/// The host of an ssh or http URL (`git@host:path`, `ssh://user@host:port/path`).
fn host_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', ':']).next().unwrap_or(rest);
    let after_user = rest.split_once('@').map_or(authority, |(_, host)| {
        host.split(['/', ':']).next().unwrap_or(host)
    });
    after_user.to_owned()
}

/// Fetching is cancelled when this is set (e.g. on timeout).
pub fn cancel_flag() -> std::sync::Arc<AtomicBool> {
    std::sync::Arc::new(AtomicBool::new(false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_credentials() {
        assert_eq!(
            redact_url("https://user:secret@example.com/org/repo.git"),
            "https://example.com/org/repo.git"
        );
        assert_eq!(redact_url("file:///tmp/repo"), "file:///tmp/repo");
        assert_eq!(
            redact_url("git@github.com:org/repo"),
            "git@github.com:org/repo"
        );
    }

    #[test]
    fn hosts_are_found_in_ssh_and_http_urls() {
        assert_eq!(host_of("git@github.com:org/repo"), "github.com");
        assert_eq!(host_of("ssh://git@example.com:2222/repo"), "example.com");
        assert_eq!(host_of("https://example.com/repo"), "example.com");
    }

    #[test]
    fn cache_names_are_readable_and_distinct() {
        let a = cache_name("https://example.com/org/repo.git");
        let b = cache_name("https://example.org/org/repo.git");
        assert!(a.starts_with("repo.git-"), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn full_shas_need_no_lookup() {
        assert!(is_full_sha("0123456789abcdef0123456789abcdef01234567"));
        assert!(!is_full_sha("v1.0.0"));
    }
}
