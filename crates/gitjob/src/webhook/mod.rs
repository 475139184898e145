//! The push webhook receiver, served by every replica (followers included) from the warm
//! GitRepo cache: it verifies the request, finds the GitRepos of the pushed repository and
//! branch, and records the commit in their `status.webhookCommit`. The leader's reconciler
//! sees that change at once and fetches; the receiver itself never touches git or Bundles.
//!
//! Secrets, as in Fleet: the GitRepo's `spec.webhookSecret` (a Secret in its namespace, which
//! must exist), or else the global Secret `gitjob-webhook` in gitjob's namespace; the key is
//! the provider's ([`Provider::secret_keys`]). A request that fails verification gets 401 and
//! changes nothing. Unlike Fleet, a GitRepo with no secret at all is not touched by a push:
//! anyone who can reach the receiver could otherwise record any commit on it (and slow its
//! polling); a push that reaches only such GitRepos gets 401. `--webhook-allow-unsigned`
//! (unsafe, for trusted networks) restores Fleet's acceptance.

pub mod providers;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use fleet_api::GitRepo;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::Store;
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
pub use providers::{Provider, Push, normalize_url};

/// The global webhook Secret's name (Fleet's).
pub const GLOBAL_SECRET: &str = "gitjob-webhook";

/// What the receiver needs.
#[derive(Clone)]
pub struct Receiver {
    pub client: Client,
    /// gitjob's namespace, where the global Secret lives.
    pub namespace: String,
    pub gitrepos: Store<GitRepo>,
    pub metrics: Metrics,
    /// Accept pushes for GitRepos without any webhook secret (unsafe; off by default).
    pub allow_unsigned: bool,
    /// Every replica serves webhooks: the commit is recorded under no claim (the GitRepo's
    /// shard owner reads it from the status).
    pub writer: fleet_runtime::Writer,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

/// Serves the receiver on `address` (any path) until `shutdown`.
pub async fn serve(
    address: SocketAddr,
    receiver: Receiver,
    shutdown: CancellationToken,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    tracing::info!(address = %listener.local_addr()?, "webhook receiver listening");
    let app = Router::new()
        .fallback(receive)
        .with_state(Arc::new(receiver));
    Ok(tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
        {
            tracing::error!(%error, "webhook receiver failed");
        }
    }))
}

async fn receive(
    State(receiver): State<Arc<Receiver>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let Some(provider) = Provider::detect(&headers) else {
        receiver.metrics.webhook("unknown", "bad_request");
        return (
            StatusCode::BAD_REQUEST,
            "unknown webhook provider\n".to_owned(),
        );
    };
    let (status, message) = receiver.handle(provider, &headers, &body).await;
    let result = match status {
        StatusCode::OK if message.starts_with("ignored") => "ignored",
        StatusCode::OK => "accepted",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::BAD_REQUEST => "bad_request",
        _ => "error",
    };
    receiver.metrics.webhook(provider.name(), result);
    tracing::info!(provider = provider.name(), status = status.as_u16(), %message, "webhook");
    (status, format!("{message}\n"))
}

impl Receiver {
    async fn handle(
        &self,
        provider: Provider,
        headers: &HeaderMap,
        body: &[u8],
    ) -> (StatusCode, String) {
        let push = match provider.parse(headers, body) {
            Ok(Some(push)) if !push.is_deletion() => push,
            Ok(_) => {
                return self
                    .verified_ignore(provider, headers, body, "ignored: not a push")
                    .await;
            }
            Err(message) => return (StatusCode::BAD_REQUEST, message),
        };
        let matching = self.matching(&push);
        if matching.is_empty() {
            return self
                .verified_ignore(
                    provider,
                    headers,
                    body,
                    "ignored: no GitRepo for this repository and branch",
                )
                .await;
        }
        // Verify for every matching GitRepo before changing any.
        let verified = match self.verify_all(provider, headers, body, matching).await {
            Ok(verified) => verified,
            Err(refused) => return refused,
        };
        self.record(&push, verified).await
    }

    /// The GitRepos whose webhook secret signed the request (or, with
    /// `--webhook-allow-unsigned`, that have none); refused when one's secret does not match
    /// or none could be verified.
    async fn verify_all(
        &self,
        provider: Provider,
        headers: &HeaderMap,
        body: &[u8],
        matching: Vec<Arc<GitRepo>>,
    ) -> Result<Vec<Arc<GitRepo>>, (StatusCode, String)> {
        let mut verified = Vec::new();
        let mut unsigned = Vec::new();
        for gitrepo in matching {
            match self.secret_for(&gitrepo, provider).await {
                Ok(Some(secret)) if provider.verify(headers, body, &secret) => {
                    verified.push(gitrepo)
                }
                Ok(Some(_)) => {
                    return Err((
                        StatusCode::UNAUTHORIZED,
                        format!(
                            "signature does not match the secret of GitRepo {}",
                            key(&gitrepo)
                        ),
                    ));
                }
                Ok(None) if self.allow_unsigned => {
                    tracing::warn!(gitrepo = %key(&gitrepo), "webhook accepted without a secret (--webhook-allow-unsigned)");
                    verified.push(gitrepo);
                }
                Ok(None) => unsigned.push(key(&gitrepo)),
                Err(message) => return Err((StatusCode::UNAUTHORIZED, message)),
            }
        }
        if !unsigned.is_empty() {
            tracing::warn!(gitrepos = %unsigned.join(", "), "push not applied to GitRepos without a webhook secret: set spec.webhookSecret or the gitjob-webhook Secret");
        }
        if verified.is_empty() {
            return Err((
                StatusCode::UNAUTHORIZED,
                format!(
                    "no webhook secret for [{}]: set spec.webhookSecret or the {GLOBAL_SECRET} Secret (or run gitjob with --webhook-allow-unsigned, unsafe)",
                    unsigned.join(", ")
                ),
            ));
        }
        Ok(verified)
    }

    /// Records the pushed commit on each GitRepo that does not have it yet.
    async fn record(&self, push: &Push, gitrepos: Vec<Arc<GitRepo>>) -> (StatusCode, String) {
        let now = jiff::Timestamp::now().to_string();
        let mut updated = Vec::new();
        for gitrepo in gitrepos {
            let status = gitrepo.status.clone().unwrap_or_default();
            if status.webhook_commit.as_deref() == Some(push.commit.as_str()) {
                continue;
            }
            let api: Api<GitRepo> = Api::namespaced(
                self.client.clone(),
                &gitrepo.namespace().unwrap_or_default(),
            );
            let patch = json!({"status": {"webhookCommit": push.commit, "lastWebhookTime": now}});
            if let Err(error) = self
                .writer
                .patch_status(
                    &api,
                    &gitrepo.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(patch),
                )
                .await
            {
                return (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("recording the commit on GitRepo {}: {error}", key(&gitrepo)),
                );
            }
            updated.push(key(&gitrepo));
        }
        (
            StatusCode::OK,
            format!(
                "commit {} recorded for [{}]",
                push.commit,
                updated.join(", ")
            ),
        )
    }

    /// Answers 200 to a request that changes nothing, once it passes the global secret.
    async fn verified_ignore(
        &self,
        provider: Provider,
        headers: &HeaderMap,
        body: &[u8],
        message: &str,
    ) -> (StatusCode, String) {
        match self.global_secret(provider).await {
            Ok(Some(secret)) if !provider.verify(headers, body, &secret) => (
                StatusCode::UNAUTHORIZED,
                "signature does not match the global webhook secret".to_owned(),
            ),
            Err(message) => (StatusCode::UNAUTHORIZED, message),
            _ => (StatusCode::OK, message.to_owned()),
        }
    }

    /// The GitRepos following the pushed repository and branch (not those pinned to a
    /// revision).
    fn matching(&self, push: &Push) -> Vec<Arc<GitRepo>> {
        let urls: Vec<String> = push.repo_urls.iter().map(|u| normalize_url(u)).collect();
        self.gitrepos
            .state()
            .into_iter()
            .filter(|gitrepo| {
                let spec = &gitrepo.spec;
                let branch = spec
                    .branch
                    .as_deref()
                    .filter(|b| !b.is_empty())
                    .unwrap_or("master");
                spec.revision.as_deref().is_none_or(str::is_empty)
                    && push.branch.as_deref() == Some(branch)
                    && urls.contains(&normalize_url(&spec.repo))
            })
            .collect()
    }

    /// The secret values that verify pushes for `gitrepo`, `None` if there is no secret.
    async fn secret_for(
        &self,
        gitrepo: &GitRepo,
        provider: Provider,
    ) -> Result<Option<Vec<String>>, String> {
        match gitrepo
            .spec
            .webhook_secret
            .as_deref()
            .filter(|s| !s.is_empty())
        {
            Some(name) => {
                let namespace = gitrepo.namespace().unwrap_or_default();
                match self.read_secret(&namespace, name, provider).await? {
                    Some(values) => Ok(Some(values)),
                    None => Err(format!(
                        "webhook secret {namespace}/{name} of GitRepo {} not found",
                        key(gitrepo)
                    )),
                }
            }
            None => self.global_secret(provider).await,
        }
    }

    async fn global_secret(&self, provider: Provider) -> Result<Option<Vec<String>>, String> {
        self.read_secret(&self.namespace, GLOBAL_SECRET, provider)
            .await
    }

    async fn read_secret(
        &self,
        namespace: &str,
        name: &str,
        provider: Provider,
    ) -> Result<Option<Vec<String>>, String> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let secret = api
            .get_opt(name)
            .await
            .map_err(|e| format!("reading webhook secret {namespace}/{name}: {e}"))?;
        let Some(secret) = secret else {
            return Ok(None);
        };
        let data = secret.data.unwrap_or_default();
        let values: Vec<String> = provider
            .secret_keys()
            .iter()
            .map(|k| {
                data.get(*k)
                    .map(|v| String::from_utf8_lossy(&v.0).into_owned())
                    .unwrap_or_default()
            })
            .collect();
        // A secret without this provider's key does not apply to it.
        Ok(values.iter().any(|v| !v.is_empty()).then_some(values))
    }
}

fn key(gitrepo: &GitRepo) -> String {
    format!(
        "{}/{}",
        gitrepo.namespace().unwrap_or_default(),
        gitrepo.name_any()
    )
}
