//! The HelmOp reconciler: fetch the Helm repository's `index.yaml` (basic auth from
//! `helmSecretName`, `insecureSkipTLSVerify`), choose the chart version (exact, a semver
//! constraint, or the newest), and write one Bundle with that chart reference (labelled
//! `fleet.cattle.io/fleet-helm-name`, owned by the HelmOp; unchanged → no write). The
//! chosen version goes to `status.version`; errors to the conditions, while the last Bundle
//! stays. With `pollingInterval`, the repository is checked again for new versions.

use std::sync::Arc;
use std::time::Duration;

use fleet_api::conditions::{self, Verdict};
use fleet_api::labels::HELM_OP_NAME;
use fleet_api::{HelmOp, HelmOpStatus, HelmRepoAccess};
use fleet_election::shards::Claims;
use fleet_runtime::bundle_store::Claimed;
use fleet_runtime::events::Events;
use fleet_runtime::{WriteError, WriteGate};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, Client, Resource, ResourceExt};

use crate::index::Index;

/// The field manager of helmops' writes.
pub const MANAGER: &str = "helmops";
/// The reporting controller of helmops' Events.
pub const EVENTS_CONTROLLER: &str = "fleet.cattle.io/helmops";

/// Shared by reconciles during one leadership term (or one replica's dynamic shards).
pub struct Context {
    pub client: Client,
    /// Under what claim writes go out: the term of helmops' Lease, or each HelmOp's shard.
    pub claims: Claims,
    /// Every write goes through it, under the HelmOp's claim (checked right before each
    /// request).
    pub gate: WriteGate,
    /// Events for errors the HelmOp's owner should act on.
    pub events: Events,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").finish_non_exhaustive()
    }
}

/// A reconcile that could not finish (retried with backoff; a write refused because the term
/// ended is the next leader's to redo).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("writing the status of HelmOp {name}: {source}")]
    Status { name: String, source: WriteError },
}

pub async fn reconcile(helmop: Arc<HelmOp>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = helmop.namespace().unwrap_or_default();
    let name = helmop.name_any();
    if helmop.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    // Another replica's shard (dynamic shards): its owner reconciles it.
    let key = format!("{namespace}/{name}");
    let Some(claim) = Claimed::for_key(&ctx.claims, &ctx.gate, &ctx.client, &key) else {
        return Ok(Action::await_change());
    };
    let outcome = sync(&helmop, &ctx, &claim).await;
    if let Err(message) = &outcome {
        tracing::warn!(helmop = %name, %namespace, error = %message, "sync failed");
        ctx.events
            .warn(
                &claim.writer,
                helmop.as_ref(),
                "SyncFailed",
                "Sync",
                message,
            )
            .await;
    }
    let current = helmop.status.clone().unwrap_or_default();
    let next = next_status(&current, &outcome, &jiff::Timestamp::now().to_string());
    if next != current {
        let patch = serde_json::json!({"status": {
            "version": next.version,
            "conditions": next.base.conditions,
        }});
        let api = Api::<HelmOp>::namespaced(ctx.client.clone(), &namespace);
        let written = claim
            .writer
            .patch_status(&api, &name, &PatchParams::default(), &Patch::Merge(patch))
            .await;
        if written.as_ref().is_err_and(WriteError::is_not_leading) {
            return Ok(Action::await_change());
        }
        written.map_err(|source| Error::Status {
            name: name.clone(),
            source,
        })?;
    }
    Ok(crate::bundle::recheck(&helmop, outcome.is_err())
        .map_or_else(Action::await_change, Action::requeue))
}

/// Resolves the version and writes the Bundle; the version, or what went wrong.
async fn sync(helmop: &HelmOp, ctx: &Context, claim: &Claimed) -> Result<String, String> {
    let namespace = helmop.namespace().unwrap_or_default();
    let helm = helmop.spec.bundle.options.helm.clone().unwrap_or_default();
    let chart = helm
        .chart
        .clone()
        .filter(|c| !c.is_empty())
        .ok_or("spec.helm.chart is empty")?;
    let version = match helm.repo.as_deref().filter(|r| !r.is_empty()) {
        // An OCI or URL chart: the version is what the spec says (helm resolves it).
        None => helm.version.clone().unwrap_or_default(),
        Some(repo) => {
            let access = access(ctx, &namespace, helmop).await?;
            let index = fetch_index(repo, &access).await?;
            index
                .resolve(&chart, helm.version.as_deref())
                .map_err(|e| e.to_string())?
        }
    };
    let bundle = crate::bundle::bundle(helmop, &version);
    claim
        .store
        .sync_labelled(
            &namespace,
            HELM_OP_NAME,
            &helmop.name_any(),
            helmop.controller_owner_ref(&()),
            vec![bundle],
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(version)
}

/// How to reach the HelmOp's repository: `helmSecretName` (`username`, `password`,
/// `cacerts`) and `insecureSkipTLSVerify`.
async fn access(ctx: &Context, namespace: &str, helmop: &HelmOp) -> Result<HelmRepoAccess, String> {
    let insecure = helmop.spec.insecure_skip_tls_verify;
    let Some(name) = helmop
        .spec
        .helm_secret_name
        .as_deref()
        .filter(|s| !s.is_empty())
    else {
        return Ok(HelmRepoAccess {
            insecure_skip_tls_verify: insecure,
            ..HelmRepoAccess::default()
        });
    };
    let secret = Api::<Secret>::namespaced(ctx.client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(|e| format!("reading secret {namespace}/{name}: {e}"))?
        .ok_or_else(|| format!("secret {namespace}/{name} not found"))?;
    Ok(HelmRepoAccess::from_secret_data(
        &secret.data.unwrap_or_default(),
        insecure,
    ))
}

/// The repository's `index.yaml`.
async fn fetch_index(repo: &str, access: &HelmRepoAccess) -> Result<Index, String> {
    let url = format!("{}/index.yaml", repo.trim_end_matches('/'));
    let mut builder = reqwest::Client::builder()
        .danger_accept_invalid_certs(access.insecure_skip_tls_verify)
        .timeout(Duration::from_secs(30));
    if let Some(pem) = &access.ca_bundle {
        let certificates = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| format!("cacerts of the Helm repository secret: {e}"))?;
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
    }
    let client = builder.build().map_err(|e| format!("http client: {e}"))?;
    let mut request = client.get(&url);
    if let (Some(user), Some(password)) = (&access.username, &access.password) {
        request = request.basic_auth(user, Some(password));
    }
    let response = request
        .send()
        .await
        .map_err(|e| format!("fetching {url}: {}", error_chain(&e)))?;
    if !response.status().is_success() {
        return Err(format!("fetching {url}: HTTP {}", response.status()));
    }
    let text = response
        .text()
        .await
        .map_err(|e| format!("reading {url}: {e}"))?;
    Index::parse(&text)
}

/// An error with its causes (reqwest's own message hides the TLS reason).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The status after an attempt; timestamps move only when a condition changes.
fn next_status(
    current: &HelmOpStatus,
    outcome: &Result<String, String>,
    now: &str,
) -> HelmOpStatus {
    let mut next = current.clone();
    let (ok, message) = match outcome {
        Ok(version) => {
            next.version = Some(version.clone()).filter(|v| !v.is_empty());
            (true, None)
        }
        Err(message) => (false, Some(message.clone())),
    };
    for type_ in ["Ready", "Accepted"] {
        let verdict = Verdict::new(ok, "Error", message.clone());
        conditions::set(&mut next.base.conditions, type_, verdict, now);
    }
    next
}

pub fn error_policy(helmop: Arc<HelmOp>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(helmop = %helmop.name_any(), %error, "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(5))
}
