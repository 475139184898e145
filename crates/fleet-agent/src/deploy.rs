//! The BundleDeployment reconciler: a new `deploymentID` is installed as a Helm release
//! (`fleet-deployer`) and reported upstream (`appliedDeploymentID`, readiness and drift of
//! its objects, the `Deployed` condition with helm's message on failure, when the previous
//! release keeps running); an unchanged one is not re-installed but watched (readiness,
//! drift, `correctDrift`); a deleted one is uninstalled first (the agent's finalizer),
//! honouring `keepResources` and `deleteNamespace`.

use std::sync::Arc;
use std::time::Duration;

use fleet_api::labels::BUNDLE_DEPLOYMENT_FINALIZER;
use fleet_api::{BundleDeployment, Content, HelmRepoAccess, helm_repo_secret_name};
use fleet_deployer::{Deployer, Release};
use fleet_election::Leadership;
use fleet_render::render::{namespace, release_name};
use fleet_render::target::ClusterInfo;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event, finalizer};
use kube::{Api, Client, ResourceExt};

use crate::monitor::Inspection;

/// What the reconciler needs.
pub struct Context {
    pub upstream: Client,
    /// The cluster the agent deploys to, where drift is looked for.
    pub downstream: Client,
    pub deployer: Deployer,
    pub cluster: ClusterInfo,
    /// This term of leadership: no helm run starts once it is told to stop, and a write
    /// goes out only while [`Leadership::still_leading`] (the Lease is still held within its
    /// renew deadline), so that a deploy in flight at a graceful hand-over is recorded by the
    /// replica that made it, before it releases the Lease, and not made again by the next.
    pub leadership: Leadership,
    /// How often deployed releases are checked for drift.
    pub drift_interval: Duration,
    pub kinds: crate::monitor::Kinds,
    pub manifests: crate::monitor::Manifests,
    /// The agent's namespace downstream (where bundles' service accounts live).
    pub agent_namespace: String,
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
    let now = jiff::Timestamp::now().to_string();
    let upstream: Api<BundleDeployment> =
        Api::namespaced(ctx.upstream.clone(), &bd.namespace().unwrap_or_default());
    let unmet = crate::dependencies::unmet(&upstream, bd)
        .await
        .map_err(|source| Error::Api {
            action: format!("reading the dependencies of {name}"),
            source,
        })?;
    if let Some(message) = unmet {
        tracing::debug!(bundle_deployment = %name, %message, "waiting");
        if let Some(patch) = crate::status::waiting(&status, &message, &now) {
            report(bd, ctx, patch).await?;
        }
        return Ok(Action::requeue(DEPENDENCY_RECHECK));
    }
    let deployed = match deploy(bd, &id, ctx).await? {
        Ok(deployed) => deployed,
        Err(message) => {
            tracing::warn!(bundle_deployment = %name, error = %message, "deploy failed");
            if let Some(patch) = crate::status::failed(&status, &message, &now) {
                report(bd, ctx, patch).await?;
            }
            // Retried: the chart or the cluster may get fixed.
            return Ok(Action::requeue(FAILED_RETRY));
        }
    };
    tracing::info!(bundle_deployment = %name, release = %deployed.release, "deployed");
    let inspection = match inspect(bd, ctx).await {
        Ok(inspection) => inspection,
        Err(message) => {
            // Installed, but the objects could not be read back: report it applied and let
            // the monitor fill in readiness.
            tracing::warn!(bundle_deployment = %name, error = %message, "cannot inspect the release");
            Inspection::default()
        }
    };
    let release = deployed.release.to_string();
    if let Some(patch) = crate::status::observed(&status, &inspection, Some((&id, &release)), &now)
    {
        report(bd, ctx, patch).await?;
    }
    Ok(Action::requeue(next_check(&inspection, ctx)))
}

/// A deployment waiting for its dependencies looks again this often.
const DEPENDENCY_RECHECK: Duration = Duration::from_secs(5);

/// A failed deploy is tried again after this long.
const FAILED_RETRY: Duration = Duration::from_secs(30);

/// Objects that are not ready yet are looked at again at least this often, so that readiness
/// shows soon after it changes.
const NOT_READY_RECHECK: Duration = Duration::from_secs(5);

fn next_check(inspection: &Inspection, ctx: &Context) -> Duration {
    if inspection.non_ready.is_empty() {
        ctx.drift_interval
    } else {
        ctx.drift_interval.min(NOT_READY_RECHECK)
    }
}

/// Writes a status patch upstream (only while leading).
async fn report(
    bd: &BundleDeployment,
    ctx: &Context,
    patch: serde_json::Value,
) -> Result<(), Error> {
    if !ctx.leadership.still_leading() {
        return Err(Error::NotLeading);
    }
    let name = bd.name_any();
    Api::<BundleDeployment>::namespaced(ctx.upstream.clone(), &bd.namespace().unwrap_or_default())
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map_err(|source| Error::Api {
            action: format!("reporting the status of {name}"),
            source,
        })?;
    Ok(())
}

/// Installs the Content of `id` with the BundleDeployment's options; the inner error is
/// helm's message (or why the content or `valuesFrom` could not be read), for the status.
async fn deploy(
    bd: &BundleDeployment,
    id: &str,
    ctx: &Context,
) -> Result<Result<fleet_deployer::Deployed, String>, Error> {
    // Stopping (hand-over or shutdown): start no new helm run; the next leader will.
    if ctx.leadership.is_cancelled() {
        return Err(Error::NotLeading);
    }
    let manifest = id.split(':').next().unwrap_or_default().to_owned();
    let content = match Api::<Content>::all(ctx.upstream.clone())
        .get(&manifest)
        .await
    {
        Ok(content) => content,
        Err(e) => return Ok(Err(format!("reading content {manifest}: {e}"))),
    };
    let options = bd.spec.options.clone();
    let name = bd.name_any();
    let release = Release {
        name: release_name(&name, &options),
        namespace: namespace(&options),
    };
    match crate::releases::conflict(&ctx.downstream, &release, &name).await {
        Ok(None) => {}
        Ok(Some(conflict)) => return Ok(Err(conflict)),
        Err(source) => {
            return Err(Error::Api {
                action: format!("reading release {release}"),
                source,
            });
        }
    }
    let selector = options.allowed_target_namespace_selector.as_ref();
    match crate::releases::namespace_allowed(&ctx.downstream, &release.namespace, selector).await {
        Ok(None) => {}
        Ok(Some(refused)) => return Ok(Err(refused)),
        Err(source) => {
            return Err(Error::Api {
                action: format!("reading namespace {}", release.namespace),
                source,
            });
        }
    }
    let values_from =
        match crate::values_from::resolve(&ctx.downstream, &options, &namespace(&options)).await {
            Ok(values) => values,
            Err(message) => return Ok(Err(message)),
        };
    let repo = match repo_access(bd, ctx).await {
        Ok(repo) => repo,
        Err(message) => return Ok(Err(message)),
    };
    let impersonate = match crate::releases::service_account(
        &ctx.downstream,
        &ctx.agent_namespace,
        options.service_account.as_deref(),
    )
    .await
    {
        Ok(user) => user,
        Err(message) => return Ok(Err(message)),
    };
    let resolved = fleet_deployer::Resolved {
        values_from,
        repo,
        impersonate,
    };
    // Whatever happens now, the release's objects may change.
    ctx.manifests.forget(&release.to_string());
    let deployer = ctx.deployer.clone();
    let cluster = ctx.cluster.clone();
    let (labels, annotations) = (
        options.namespace_labels.clone(),
        options.namespace_annotations.clone(),
    );
    let deployed = tokio::task::spawn_blocking(move || {
        let files = fleet_deployer::content::files(&content).map_err(|e| e.to_string())?;
        deployer
            .deploy(&name, &options, &files, &cluster, &resolved)
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| Error::Deploy(e.to_string()))?;
    if deployed.is_ok()
        && let Err(e) = crate::releases::label_namespace(
            &ctx.downstream,
            &release.namespace,
            labels.as_ref(),
            annotations.as_ref(),
        )
        .await
    {
        return Ok(Err(format!(
            "namespaceLabels/namespaceAnnotations on {}: {e}",
            release.namespace
        )));
    }
    Ok(deployed)
}

/// Credentials and TLS for the chart's Helm repository: the Secret the controller copied
/// into the cluster namespace from the bundle's `helmOpSecretName`.
async fn repo_access(bd: &BundleDeployment, ctx: &Context) -> Result<HelmRepoAccess, String> {
    let Some(options) = &bd.spec.helm_chart_options else {
        return Ok(HelmRepoAccess::default());
    };
    let insecure = options.helm_op_insecure_skip_tls_verify;
    if options
        .helm_op_secret_name
        .as_deref()
        .is_none_or(str::is_empty)
    {
        return Ok(HelmRepoAccess {
            insecure_skip_tls_verify: insecure,
            ..HelmRepoAccess::default()
        });
    }
    let namespace = bd.namespace().unwrap_or_default();
    let name = helm_repo_secret_name(&bd.name_any());
    let secret = Api::<Secret>::namespaced(ctx.upstream.clone(), &namespace)
        .get_opt(&name)
        .await
        .map_err(|e| format!("reading the Helm repository credentials {namespace}/{name}: {e}"))?
        .ok_or_else(|| {
            format!("the Helm repository credentials {namespace}/{name} are not there yet")
        })?;
    Ok(HelmRepoAccess::from_secret_data(
        &secret.data.unwrap_or_default(),
        insecure,
    ))
}

/// Looks at a deployed BundleDeployment's objects: readiness, drift (corrected when asked);
/// reports what changed.
async fn monitor(bd: &BundleDeployment, ctx: &Context) -> Result<Action, Error> {
    let name = bd.name_any();
    let mut inspection = match inspect(bd, ctx).await {
        Ok(inspection) => inspection,
        Err(message) => {
            tracing::warn!(bundle_deployment = %name, error = %message, "cannot inspect the release; retrying");
            return Ok(Action::requeue(ctx.drift_interval));
        }
    };
    let correct = bd.spec.correct_drift.as_ref().is_some_and(|c| c.enabled);
    if !inspection.modified.is_empty() && correct {
        let id = bd.spec.deployment_id.clone().unwrap_or_default();
        tracing::info!(bundle_deployment = %name, objects = inspection.modified.len(), "correcting drift");
        // `correctDrift.force`: replace what cannot be patched back.
        let mut correcting = bd.clone();
        if bd.spec.correct_drift.as_ref().is_some_and(|c| c.force) {
            correcting.spec.options.helm.get_or_insert_default().force = true;
        }
        if let Err(message) = deploy(&correcting, &id, ctx).await? {
            tracing::warn!(bundle_deployment = %name, error = %message, "drift correction failed");
        }
        if let Ok(after) = inspect(bd, ctx).await {
            inspection = after;
        }
    }
    let status = bd.status.clone().unwrap_or_default();
    let now = jiff::Timestamp::now().to_string();
    if let Some(patch) = crate::status::observed(&status, &inspection, None, &now) {
        tracing::debug!(bundle_deployment = %name, ready = inspection.non_ready.is_empty(), modified = inspection.modified.len(), "status changed");
        report(bd, ctx, patch).await?;
    }
    Ok(Action::requeue(next_check(&inspection, ctx)))
}

/// The release's objects next to what it wants.
async fn inspect(bd: &BundleDeployment, ctx: &Context) -> Result<Inspection, String> {
    let options = &bd.spec.options;
    let release = Release {
        name: release_name(&bd.name_any(), options),
        namespace: namespace(options),
    };
    let key = release.to_string();
    let manifest = match ctx.manifests.get(&key) {
        Some(manifest) => manifest,
        None => {
            let deployer = ctx.deployer.clone();
            let target = release.clone();
            let manifest = tokio::task::spawn_blocking(move || deployer.manifest(&target))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            let manifest = Arc::new(manifest);
            ctx.manifests.insert(key, manifest.clone());
            manifest
        }
    };
    crate::monitor::inspect(&ctx.downstream, &ctx.kinds, &manifest, &release, options).await
}

/// A deleted BundleDeployment: its release is uninstalled; with `keepResources` Helm only
/// forgets it (its history Secrets go, its objects stay); with `deleteNamespace` its
/// namespace goes too.
async fn cleanup(bd: &BundleDeployment, ctx: &Context) -> Result<Action, Error> {
    let options = &bd.spec.options;
    let release = Release {
        name: release_name(&bd.name_any(), options),
        namespace: namespace(options),
    };
    let name = bd.name_any();
    match crate::releases::conflict(&ctx.downstream, &release, &name).await {
        Ok(None) => {}
        Ok(Some(conflict)) => {
            tracing::warn!(bundle_deployment = %name, %conflict, "not removing a release another bundle deployment owns");
            return Ok(Action::await_change());
        }
        Err(source) => {
            return Err(Error::Api {
                action: format!("reading release {release}"),
                source,
            });
        }
    }
    if options.keep_resources {
        tracing::info!(bundle_deployment = %bd.name_any(), %release, "keepResources: forgetting the release, keeping its objects");
        return crate::releases::forget_release(&ctx.downstream, &release)
            .await
            .map(|()| Action::await_change())
            .map_err(|source| Error::Api {
                action: format!("forgetting release {release}"),
                source,
            });
    }
    ctx.manifests.forget(&release.to_string());
    let deployer = ctx.deployer.clone();
    let target = release.clone();
    tokio::task::spawn_blocking(move || deployer.uninstall(&target))
        .await
        .map_err(|e| Error::Deploy(e.to_string()))?
        .map_err(|e| Error::Deploy(e.to_string()))?;
    if options.delete_namespace {
        crate::releases::delete_namespace(&ctx.downstream, &release.namespace)
            .await
            .map_err(|source| Error::Api {
                action: format!("deleting namespace {}", release.namespace),
                source,
            })?;
    }
    Ok(Action::await_change())
}

pub fn error_policy(bd: Arc<BundleDeployment>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(bundle_deployment = %bd.name_any(), %error, "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(5))
}
