//! The deploying role's BundleDeployment reconciler: a new `deploymentID` is installed as a
//! Helm release (`fleet-deployer`) and reported upstream (`appliedDeploymentID`, readiness
//! and drift of its objects, the `Deployed` condition with helm's message on failure, when
//! the previous release keeps running); an unchanged one is left to the monitoring role
//! ([`crate::monitor`]) except that drift it reports is corrected here (`correctDrift`: a
//! helm run is deploy work); a deleted one is uninstalled first (the agent's finalizer),
//! honouring `keepResources` and `deleteNamespace`.

use std::sync::Arc;
use std::time::Duration;

use fleet_api::labels::BUNDLE_DEPLOYMENT_FINALIZER;
use fleet_api::{BundleDeployment, Content, HelmRepoAccess, helm_repo_secret_name};
use fleet_deployer::Release;
use fleet_election::Leadership;
use fleet_render::render::{namespace, release_name};
use fleet_render::target::ClusterInfo;
use fleet_runtime::Writer;
use fleet_runtime::finalizer::{Event, FinalizerError, finalized};
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::controller::Action;
use kube::{Api, Client, ResourceExt};

use crate::Error;
use crate::inspect::{Inspection, Inspector};
use crate::report::{self, Freshness};

/// What the reconciler needs.
pub struct Context {
    pub upstream: Client,
    /// The cluster the agent deploys to, and its releases.
    pub inspector: Inspector,
    pub cluster: ClusterInfo,
    /// This term of leadership: no helm run starts once it is told to stop.
    pub leadership: Leadership,
    /// The term's writes: each goes out only while the Lease is still held within its renew
    /// deadline, so that a deploy in flight at a graceful hand-over is recorded by the replica
    /// that made it, before it releases the Lease, and not made again by the next.
    pub writer: Writer,
    /// How often a failed drift correction is tried again.
    pub drift_interval: Duration,
    /// The agent's namespace downstream (where bundles' service accounts live).
    pub agent_namespace: String,
    /// Events upstream for deploys that fail (on the BundleDeployment).
    pub events: fleet_runtime::events::Events,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("cluster", &self.cluster.name)
            .finish_non_exhaustive()
    }
}

pub async fn reconcile(bd: Arc<BundleDeployment>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = bd.namespace().unwrap_or_default();
    let api: Api<BundleDeployment> = Api::namespaced(ctx.upstream.clone(), &namespace);
    finalized(
        &ctx.writer,
        &api,
        BUNDLE_DEPLOYMENT_FINALIZER,
        bd,
        |event| async {
            match event {
                Event::Apply(bd) => apply(&bd, &ctx).await,
                Event::Cleanup(bd) => cleanup(&bd, &ctx).await,
            }
        },
    )
    .await
    .map_err(|e| match e {
        FinalizerError::Apply(e) | FinalizerError::Cleanup(e) => e,
        FinalizerError::Write(e) => Error::Write(e),
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
        return correct_drift(bd, &id, ctx).await;
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
    let deployed = match already_installed(bd, &id, ctx).await? {
        Some(deployed) => Ok(deployed),
        None => deploy(bd, &id, ctx).await?,
    };
    let deployed = match deployed {
        Ok(deployed) => deployed,
        Err(message) => {
            tracing::warn!(bundle_deployment = %name, error = %message, "deploy failed");
            ctx.events
                .warn(&ctx.writer, bd, "DeployFailed", "Deploy", &message)
                .await;
            if let Some(patch) = crate::status::failed(&status, &message, &now) {
                report(bd, ctx, patch).await?;
            }
            // Retried: the chart or the cluster may get fixed.
            return Ok(Action::requeue(FAILED_RETRY));
        }
    };
    tracing::info!(bundle_deployment = %name, release = %deployed.release, "deployed");
    let inspection = match ctx.inspector.inspect(bd, &id).await {
        Ok(inspection) => inspection,
        Err(message) => {
            // Installed, but the objects could not be read back: report it applied and let
            // the monitoring role fill in readiness.
            tracing::warn!(bundle_deployment = %name, error = %message, "cannot inspect the release");
            Inspection::default()
        }
    };
    let release = deployed.release.to_string();
    if let Some(patch) = crate::status::observed(&status, &inspection, Some((&id, &release)), &now)
    {
        report(bd, ctx, patch).await?;
    }
    // From here on the monitoring role looks at it (the status just written wakes it).
    Ok(Action::await_change())
}

/// The release, when helm already installed deployment `id` of `bd` but its status was not
/// recorded (the upstream API server went away in between): record it, do not upgrade the
/// release a second time. (Drift correction does run helm again for an applied deployment.)
async fn already_installed(
    bd: &BundleDeployment,
    id: &str,
    ctx: &Context,
) -> Result<Option<fleet_deployer::Deployed>, Error> {
    let name = bd.name_any();
    let release = Release {
        name: release_name(&name, &bd.spec.options),
        namespace: namespace(&bd.spec.options),
    };
    let installed = crate::releases::deployed_as(&ctx.inspector.downstream, &release, &name, id)
        .await
        .map_err(|source| Error::Api {
            action: format!("reading release {release}"),
            source,
        })?;
    if !installed {
        return Ok(None);
    }
    tracing::info!(bundle_deployment = %name, %release, "already installed: recorded, not run again");
    Ok(Some(fleet_deployer::Deployed { release }))
}

/// A deployment waiting for its dependencies looks again this often.
const DEPENDENCY_RECHECK: Duration = Duration::from_secs(5);

/// A failed deploy is tried again after this long.
const FAILED_RETRY: Duration = Duration::from_secs(30);

/// Writes a status patch upstream (only while leading).
async fn report(
    bd: &BundleDeployment,
    ctx: &Context,
    patch: serde_json::Value,
) -> Result<(), Error> {
    report::status(
        &ctx.upstream,
        &ctx.writer,
        bd,
        patch,
        Freshness::Authoritative,
    )
    .await
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
    match crate::releases::conflict(&ctx.inspector.downstream, &release, &name).await {
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
    match crate::releases::namespace_allowed(
        &ctx.inspector.downstream,
        &release.namespace,
        selector,
    )
    .await
    {
        Ok(None) => {}
        Ok(Some(refused)) => return Ok(Err(refused)),
        Err(source) => {
            return Err(Error::Api {
                action: format!("reading namespace {}", release.namespace),
                source,
            });
        }
    }
    let values_from = match crate::values_from::resolve(
        &ctx.inspector.downstream,
        &options,
        &namespace(&options),
    )
    .await
    {
        Ok(values) => values,
        Err(message) => return Ok(Err(message)),
    };
    let repo = match repo_access(bd, ctx).await {
        Ok(repo) => repo,
        Err(message) => return Ok(Err(message)),
    };
    let impersonate = match crate::releases::service_account(
        &ctx.inspector.downstream,
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
    ctx.inspector.forget(&release);
    let deployer = ctx.inspector.deployer.clone();
    let cluster = ctx.cluster.clone();
    let (labels, annotations) = (
        options.namespace_labels.clone(),
        options.namespace_annotations.clone(),
    );
    let deployment_id = id.to_owned();
    let deployed = tokio::task::spawn_blocking(move || {
        let files = fleet_deployer::content::files(&content).map_err(|e| e.to_string())?;
        deployer
            .deploy(&name, &deployment_id, &options, &files, &cluster, &resolved)
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| Error::Deploy(e.to_string()))?;
    if deployed.is_ok()
        && let Err(e) = crate::releases::label_namespace(
            &ctx.writer,
            &ctx.inspector.downstream,
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

/// A deployed BundleDeployment with `correctDrift` whose status (written by the monitoring
/// role) lists modified objects: installed again (`correctDrift.force`: replacing what cannot
/// be patched back), then looked at and reported.
async fn correct_drift(bd: &BundleDeployment, id: &str, ctx: &Context) -> Result<Action, Error> {
    let status = bd.status.clone().unwrap_or_default();
    let Some(correct) = bd.spec.correct_drift.as_ref().filter(|c| c.enabled) else {
        return Ok(Action::await_change());
    };
    if status.modified_status.is_empty() {
        return Ok(Action::await_change());
    }
    let name = bd.name_any();
    tracing::info!(bundle_deployment = %name, objects = status.modified_status.len(), "correcting drift");
    let mut correcting = bd.clone();
    if correct.force {
        correcting.spec.options.helm.get_or_insert_default().force = true;
    }
    if let Err(message) = deploy(&correcting, id, ctx).await? {
        tracing::warn!(bundle_deployment = %name, error = %message, "drift correction failed");
        return Ok(Action::requeue(ctx.drift_interval));
    }
    let inspection = match ctx.inspector.inspect(bd, id).await {
        Ok(inspection) => inspection,
        Err(message) => {
            tracing::warn!(bundle_deployment = %name, error = %message, "cannot inspect the release");
            return Ok(Action::await_change());
        }
    };
    let now = jiff::Timestamp::now().to_string();
    if let Some(patch) = crate::status::observed(&status, &inspection, None, &now) {
        report(bd, ctx, patch).await?;
    }
    if inspection.modified.is_empty() {
        Ok(Action::await_change())
    } else {
        // What helm could not put back is tried again, as often as drift is looked for.
        Ok(Action::requeue(ctx.drift_interval))
    }
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
    match crate::releases::conflict(&ctx.inspector.downstream, &release, &name).await {
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
        return crate::releases::forget_release(&ctx.writer, &ctx.inspector.downstream, &release)
            .await
            .map(|()| Action::await_change())
            .map_err(Error::from);
    }
    ctx.inspector.forget(&release);
    let deployer = ctx.inspector.deployer.clone();
    let target = release.clone();
    tokio::task::spawn_blocking(move || deployer.uninstall(&target))
        .await
        .map_err(|e| Error::Deploy(e.to_string()))?
        .map_err(|e| Error::Deploy(e.to_string()))?;
    if options.delete_namespace {
        crate::releases::delete_namespace(
            &ctx.writer,
            &ctx.inspector.downstream,
            &release.namespace,
        )
        .await?;
    }
    Ok(Action::await_change())
}

pub fn error_policy(bd: Arc<BundleDeployment>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(bundle_deployment = %bd.name_any(), %error, "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(5))
}
