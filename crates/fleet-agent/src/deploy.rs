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

/// What the deploying role does for a BundleDeployment, decided from it alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing to deploy (no deployment yet, or paused), or deployed and nothing to correct:
    /// the monitoring role looks at it.
    Idle,
    /// Install deployment `id` (after its dependencies are ready).
    Deploy { id: String },
    /// Deployment `id` is applied and the monitoring role reported drift that `correctDrift`
    /// asks to put back (`force`: replace what cannot be patched).
    CorrectDrift { id: String, force: bool },
}

/// The step for `bd` (pure).
pub fn plan(bd: &BundleDeployment) -> Step {
    let Some(id) = bd.spec.deployment_id.clone().filter(|id| !id.is_empty()) else {
        return Step::Idle;
    };
    if bd.spec.paused {
        return Step::Idle;
    }
    let status = bd.status.clone().unwrap_or_default();
    if status.applied_deployment_id.as_deref() != Some(id.as_str()) {
        return Step::Deploy { id };
    }
    match bd.spec.correct_drift.as_ref().filter(|c| c.enabled) {
        Some(correct) if !status.modified_status.is_empty() => Step::CorrectDrift {
            id,
            force: correct.force,
        },
        _ => Step::Idle,
    }
}

/// The Helm release of a BundleDeployment.
pub fn release_of(bd: &BundleDeployment) -> Release {
    Release {
        name: release_name(&bd.name_any(), &bd.spec.options),
        namespace: namespace(&bd.spec.options),
    }
}

async fn apply(bd: &BundleDeployment, ctx: &Context) -> Result<Action, Error> {
    match plan(bd) {
        Step::Idle => Ok(Action::await_change()),
        Step::CorrectDrift { id, force } => correct_drift(bd, &id, force, ctx).await,
        Step::Deploy { id } => deploy_new(bd, &id, ctx).await,
    }
}

/// Installs a new deployment once its dependencies are ready, and reports it.
async fn deploy_new(bd: &BundleDeployment, id: &str, ctx: &Context) -> Result<Action, Error> {
    let status = bd.status.clone().unwrap_or_default();
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
    let release = release_of(bd);
    let deployed = match already_installed(bd, &release, id, ctx).await? {
        Some(deployed) => Ok(deployed),
        None => deploy(bd, &release, id, ctx).await?,
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
    let inspection = match ctx.inspector.inspect(bd, id).await {
        Ok(inspection) => inspection,
        Err(message) => {
            // Installed, but the objects could not be read back: report it applied and let
            // the monitoring role fill in readiness.
            tracing::warn!(bundle_deployment = %name, error = %message, "cannot inspect the release");
            Inspection::default()
        }
    };
    let release = deployed.release.to_string();
    if let Some(patch) = crate::status::observed(&status, &inspection, Some((id, &release)), &now) {
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
    release: &Release,
    id: &str,
    ctx: &Context,
) -> Result<Option<fleet_deployer::Deployed>, Error> {
    let name = bd.name_any();
    let installed = crate::releases::deployed_as(&ctx.inspector.downstream, release, &name, id)
        .await
        .map_err(|source| Error::Api {
            action: format!("reading release {release}"),
            source,
        })?;
    if !installed {
        return Ok(None);
    }
    tracing::info!(bundle_deployment = %name, %release, "already installed: recorded, not run again");
    Ok(Some(fleet_deployer::Deployed {
        release: release.clone(),
    }))
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

/// Installs the Content of `id` as `release` with the BundleDeployment's options; the inner
/// error is helm's message (or why the content or `valuesFrom` could not be read), for the
/// status.
async fn deploy(
    bd: &BundleDeployment,
    release: &Release,
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
    let resolved = match prepare(bd, release, ctx).await? {
        Ok(resolved) => resolved,
        Err(refused) => return Ok(Err(refused)),
    };
    // Whatever happens now, the release's objects may change.
    ctx.inspector.forget(release);
    let deployer = ctx.inspector.deployer.clone();
    let cluster = ctx.cluster.clone();
    let options = bd.spec.options.clone();
    let (name, deployment_id) = (bd.name_any(), id.to_owned());
    let deployed = tokio::task::spawn_blocking(move || {
        let files = fleet_deployer::content::files(&content).map_err(|e| e.to_string())?;
        deployer
            .deploy(&name, &deployment_id, &options, &files, &cluster, &resolved)
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| Error::Deploy(e.to_string()))?;
    let options = &bd.spec.options;
    if deployed.is_ok()
        && let Err(e) = crate::releases::label_namespace(
            &ctx.writer,
            &ctx.inspector.downstream,
            &release.namespace,
            options.namespace_labels.as_ref(),
            options.namespace_annotations.as_ref(),
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

/// What helm needs besides the chart, or why the release may not be installed: another
/// BundleDeployment owns it, its namespace is not allowed, or `valuesFrom`, the Helm
/// repository's credentials or the service account cannot be read.
async fn prepare(
    bd: &BundleDeployment,
    release: &Release,
    ctx: &Context,
) -> Result<Result<fleet_deployer::Resolved, String>, Error> {
    let downstream = &ctx.inspector.downstream;
    let options = &bd.spec.options;
    let reading = |what: String| {
        move |source| Error::Api {
            action: format!("reading {what}"),
            source,
        }
    };
    let conflict = crate::releases::conflict(downstream, release, &bd.name_any())
        .await
        .map_err(reading(format!("release {release}")))?;
    if let Some(conflict) = conflict {
        return Ok(Err(conflict));
    }
    let selector = options.allowed_target_namespace_selector.as_ref();
    let refused = crate::releases::namespace_allowed(downstream, &release.namespace, selector)
        .await
        .map_err(reading(format!("namespace {}", release.namespace)))?;
    if let Some(refused) = refused {
        return Ok(Err(refused));
    }
    let resolved = async {
        Ok(fleet_deployer::Resolved {
            values_from: crate::values_from::resolve(downstream, options, &namespace(options))
                .await?,
            repo: repo_access(bd, ctx).await?,
            impersonate: crate::releases::service_account(
                downstream,
                &ctx.agent_namespace,
                options.service_account.as_deref(),
            )
            .await?,
        })
    };
    Ok(resolved.await)
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
async fn correct_drift(
    bd: &BundleDeployment,
    id: &str,
    force: bool,
    ctx: &Context,
) -> Result<Action, Error> {
    let status = bd.status.clone().unwrap_or_default();
    let name = bd.name_any();
    tracing::info!(bundle_deployment = %name, objects = status.modified_status.len(), "correcting drift");
    let mut correcting = bd.clone();
    if force {
        correcting.spec.options.helm.get_or_insert_default().force = true;
    }
    if let Err(message) = deploy(&correcting, &release_of(bd), id, ctx).await? {
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
    let release = release_of(bd);
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

#[cfg(test)]
mod tests {
    use fleet_api::{BundleDeploymentStatus, CorrectDrift, ModifiedStatus};

    use super::*;

    fn bd(
        id: Option<&str>,
        applied: Option<&str>,
        paused: bool,
        correct: Option<bool>,
        drifted: bool,
    ) -> BundleDeployment {
        let mut bd = BundleDeployment::new("app", Default::default());
        bd.spec.deployment_id = id.map(str::to_owned);
        bd.spec.paused = paused;
        bd.spec.correct_drift = correct.map(|force| CorrectDrift {
            enabled: true,
            force,
            ..Default::default()
        });
        bd.status = Some(BundleDeploymentStatus {
            applied_deployment_id: applied.map(str::to_owned),
            modified_status: if drifted {
                vec![ModifiedStatus::default()]
            } else {
                Vec::new()
            },
            ..Default::default()
        });
        bd
    }

    #[test]
    fn the_step_follows_the_deployment_and_the_drift() {
        let deploy = || Step::Deploy {
            id: "s-2:o".to_owned(),
        };
        let correct = |force| Step::CorrectDrift {
            id: "s-2:o".to_owned(),
            force,
        };
        // (deploymentID, applied, paused, correctDrift (force), drift reported, step)
        let cases = [
            (None, None, false, None, false, Step::Idle),
            (Some(""), None, false, None, false, Step::Idle),
            (Some("s-2:o"), Some("s-1:o"), true, None, false, Step::Idle),
            (Some("s-2:o"), None, false, None, false, deploy()),
            (
                Some("s-2:o"),
                Some("s-1:o"),
                false,
                Some(false),
                true,
                deploy(),
            ),
            (Some("s-2:o"), Some("s-2:o"), false, None, true, Step::Idle),
            (
                Some("s-2:o"),
                Some("s-2:o"),
                false,
                Some(false),
                false,
                Step::Idle,
            ),
            (
                Some("s-2:o"),
                Some("s-2:o"),
                false,
                Some(false),
                true,
                correct(false),
            ),
            (
                Some("s-2:o"),
                Some("s-2:o"),
                false,
                Some(true),
                true,
                correct(true),
            ),
        ];
        for (id, applied, paused, correct, drifted, step) in cases {
            assert_eq!(
                plan(&bd(id, applied, paused, correct, drifted)),
                step,
                "{id:?} applied {applied:?} paused {paused} correct {correct:?} drift {drifted}"
            );
        }
    }
}
