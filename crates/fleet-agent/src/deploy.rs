//! The BundleDeployment reconciler: a new `deploymentID` is installed as a Helm release
//! (`fleet-deployer`) and reported upstream (`appliedDeploymentID`, `ready`, the `Deployed`
//! condition with helm's message on failure, when the previous release keeps running); an
//! unchanged one is not re-installed; a deleted one is uninstalled first (the agent's
//! finalizer), unless `keepResources`.

use std::sync::Arc;
use std::time::Duration;

use fleet_api::labels::BUNDLE_DEPLOYMENT_FINALIZER;
use fleet_api::{BundleDeployment, Condition, Content};
use fleet_deployer::{Deployer, Release};
use fleet_render::render::{namespace, release_name};
use fleet_render::target::ClusterInfo;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event, finalizer};
use kube::{Api, Client, ResourceExt};
use tokio_util::sync::CancellationToken;

/// What the reconciler needs.
pub struct Context {
    pub upstream: Client,
    /// The cluster the agent deploys to, where drift is looked for.
    pub downstream: Client,
    pub deployer: Deployer,
    pub cluster: ClusterInfo,
    pub leadership: CancellationToken,
    /// How often deployed releases are checked for drift.
    pub drift_interval: Duration,
    pub kinds: crate::monitor::Kinds,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("cluster", &self.cluster.name)
            .finish_non_exhaustive()
    }
}

/// A reconcile that could not finish (retried with backoff).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{action}: {source}")]
    Api { action: String, source: kube::Error },
    #[error("leadership lost")]
    NotLeading,
    #[error("finalizer: {0}")]
    Finalizer(String),
    #[error("{0}")]
    Deploy(String),
}

pub async fn reconcile(bd: Arc<BundleDeployment>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = bd.namespace().unwrap_or_default();
    let api: Api<BundleDeployment> = Api::namespaced(ctx.upstream.clone(), &namespace);
    finalizer(&api, BUNDLE_DEPLOYMENT_FINALIZER, bd, |event| async {
        match event {
            Event::Apply(bd) => apply(&bd, &ctx).await,
            Event::Cleanup(bd) => cleanup(&bd, &ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(other.to_string()),
    })
}

async fn apply(bd: &BundleDeployment, ctx: &Context) -> Result<Action, Error> {
    let Some(id) = bd.spec.deployment_id.clone().filter(|id| !id.is_empty()) else {
        return Ok(Action::await_change());
    };
    let status = bd.status.clone().unwrap_or_default();
    if bd.spec.paused {
        return Ok(Action::await_change());
    }
    if status.applied_deployment_id.as_deref() == Some(id.as_str()) {
        return monitor(bd, ctx).await;
    }
    let name = bd.name_any();
    let result = deploy(bd, &id, ctx).await?;
    if ctx.leadership.is_cancelled() {
        return Err(Error::NotLeading);
    }
    let now = jiff::Timestamp::now().to_string();
    let previous = &status.conditions;
    let patch = match &result {
        Ok(deployed) => {
            tracing::info!(bundle_deployment = %name, release = %deployed.release, "deployed");
            serde_json::json!({"status": {
                "appliedDeploymentID": id,
                "release": deployed.release.to_string(),
                "ready": true,
                "nonModified": true,
                "conditions": [
                    condition(previous, "Deployed", true, None, &now),
                    condition(previous, "Ready", true, None, &now),
                ],
                "display": {"deployed": "Yes", "state": "Ready"},
            }})
        }
        Err(message) => {
            tracing::warn!(bundle_deployment = %name, error = %message, "deploy failed");
            let conditions = vec![
                condition(previous, "Deployed", false, Some(message), &now),
                condition(previous, "Ready", false, Some(message), &now),
            ];
            if conditions.iter().all(|c| previous.contains(c)) {
                // Reported already: writing it again would only wake this reconciler.
                return Ok(Action::requeue(Duration::from_secs(30)));
            }
            serde_json::json!({"status": {
                "conditions": conditions,
                "display": {"deployed": format!("Error: {message}"), "state": "ErrApplied"},
            }})
        }
    };
    Api::<BundleDeployment>::namespaced(ctx.upstream.clone(), &bd.namespace().unwrap_or_default())
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map_err(|source| Error::Api {
            action: format!("reporting the status of {name}"),
            source,
        })?;
    Ok(match result {
        // Checked for drift from now on.
        Ok(_) => Action::requeue(ctx.drift_interval),
        // A failed deploy is retried: the chart or the cluster may get fixed.
        Err(_) => Action::requeue(Duration::from_secs(30)),
    })
}

/// Installs the Content of `id` with the BundleDeployment's options; the inner error is
/// helm's message (or why the content could not be read), for the status.
async fn deploy(
    bd: &BundleDeployment,
    id: &str,
    ctx: &Context,
) -> Result<Result<fleet_deployer::Deployed, String>, Error> {
    let manifest = id.split(':').next().unwrap_or_default().to_owned();
    let content = match Api::<Content>::all(ctx.upstream.clone())
        .get(&manifest)
        .await
    {
        Ok(content) => content,
        Err(e) => return Ok(Err(format!("reading content {manifest}: {e}"))),
    };
    let deployer = ctx.deployer.clone();
    let options = bd.spec.options.clone();
    let cluster = ctx.cluster.clone();
    let name = bd.name_any();
    tokio::task::spawn_blocking(move || {
        let files = fleet_deployer::content::files(&content).map_err(|e| e.to_string())?;
        deployer
            .deploy(&name, &options, &files, &cluster)
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| Error::Deploy(e.to_string()))
}

/// Looks for drift in a deployed BundleDeployment, corrects it when asked, and reports
/// `nonModified`/`modifiedStatus` when they change.
async fn monitor(bd: &BundleDeployment, ctx: &Context) -> Result<Action, Error> {
    let name = bd.name_any();
    let options = &bd.spec.options;
    let release = Release {
        name: release_name(&name, options),
        namespace: namespace(options),
    };
    let mut modified = match check(&release, ctx).await {
        Ok(modified) => modified,
        Err(message) => {
            tracing::warn!(bundle_deployment = %name, error = %message, "cannot check for drift; retrying");
            return Ok(Action::requeue(ctx.drift_interval));
        }
    };
    let correct = bd.spec.correct_drift.as_ref().is_some_and(|c| c.enabled);
    if !modified.is_empty() && correct {
        let id = bd.spec.deployment_id.clone().unwrap_or_default();
        tracing::info!(bundle_deployment = %name, objects = modified.len(), "correcting drift");
        if let Err(message) = deploy(bd, &id, ctx).await? {
            tracing::warn!(bundle_deployment = %name, error = %message, "drift correction failed");
        }
        modified = check(&release, ctx).await.unwrap_or(modified);
    }
    let status = bd.status.clone().unwrap_or_default();
    if status.non_modified != modified.is_empty() || status.modified_status != modified {
        if ctx.leadership.is_cancelled() {
            return Err(Error::NotLeading);
        }
        let patch = serde_json::json!({"status": {"nonModified": modified.is_empty(), "modifiedStatus": modified}});
        Api::<BundleDeployment>::namespaced(
            ctx.upstream.clone(),
            &bd.namespace().unwrap_or_default(),
        )
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map_err(|source| Error::Api {
            action: format!("reporting drift of {name}"),
            source,
        })?;
    }
    Ok(Action::requeue(ctx.drift_interval))
}

/// The release's objects that are missing or changed downstream.
async fn check(release: &Release, ctx: &Context) -> Result<Vec<fleet_api::ModifiedStatus>, String> {
    let deployer = ctx.deployer.clone();
    let target = release.clone();
    let manifest = tokio::task::spawn_blocking(move || deployer.manifest(&target))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    crate::monitor::modified(&ctx.downstream, &ctx.kinds, &manifest, &release.namespace).await
}

async fn cleanup(bd: &BundleDeployment, ctx: &Context) -> Result<Action, Error> {
    let options = &bd.spec.options;
    if options.keep_resources {
        tracing::info!(bundle_deployment = %bd.name_any(), "keepResources: leaving the release in place");
        return Ok(Action::await_change());
    }
    let release = Release {
        name: release_name(&bd.name_any(), options),
        namespace: namespace(options),
    };
    let deployer = ctx.deployer.clone();
    tokio::task::spawn_blocking(move || deployer.uninstall(&release))
        .await
        .map_err(|e| Error::Deploy(e.to_string()))?
        .map_err(|e| Error::Deploy(e.to_string()))?;
    Ok(Action::await_change())
}

/// A condition; an unchanged one keeps its timestamps.
fn condition(
    previous: &[Condition],
    type_: &str,
    ok: bool,
    message: Option<&String>,
    now: &str,
) -> Condition {
    let status = if ok { "True" } else { "False" }.to_owned();
    if let Some(same) = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status && c.message.as_ref() == message)
    {
        return same.clone();
    }
    Condition {
        type_: type_.to_owned(),
        status,
        last_update_time: Some(now.to_owned()),
        last_transition_time: Some(now.to_owned()),
        reason: (!ok).then(|| "Error".to_owned()),
        message: message.cloned(),
    }
}

pub fn error_policy(bd: Arc<BundleDeployment>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(bundle_deployment = %bd.name_any(), %error, "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(5))
}
