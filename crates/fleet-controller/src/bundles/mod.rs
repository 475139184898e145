//! The Bundle reconciler: writes the BundleDeployments [`deployments::desired_as`] computes,
//! each kept as its JSON until written ([`planned`]), with a create or a server-side apply
//! only when their content hash changed; writes the Content of the manifest, and deletes
//! BundleDeployments no longer targeted; the second rolls their states up into the
//! Bundle's status (written only when it changed). A paused Bundle stages new options without
//! changing what is deployed. A Bundle being deleted first deletes its BundleDeployments
//! (Fleet's finalizer).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use fleet_api::labels::{BUNDLE_FINALIZER, BUNDLE_NAME, BUNDLE_NAMESPACE};
use fleet_api::{Bundle, BundleDeployment, BundleNamespaceMapping, Cluster, ClusterGroup, Content};
use fleet_runtime::expectations::Seen;
use fleet_runtime::finalizer::{Event, FinalizerError, finalized};
use fleet_runtime::{WriteError, inventory};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::Store;
use kube::{Api, ResourceExt};

use crate::context::{Context, retry};
use crate::deployed::Deployed;
use crate::error::{Error, MANAGER, NotLeading};
use crate::plan_budget::Reserved;
use crate::wiring::{Term, in_namespace, label_ref, when_changed};
use planned::Planned;

pub mod plan;
pub mod planned;
pub mod status;
use fleet_render::deployments;
use fleet_render::rollout;

/// Reconciles one Bundle.
pub async fn reconcile(bundle: Arc<Bundle>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = bundle.namespace().unwrap_or_default();
    let api: Api<Bundle> = Api::namespaced(ctx.client.clone(), &namespace);
    let writer = ctx.writer();
    let result = finalized(&writer, &api, BUNDLE_FINALIZER, bundle, |event| async {
        match event {
            Event::Apply(bundle) => apply(&bundle, &ctx).await,
            Event::Cleanup(bundle) => cleanup(&bundle, &ctx).await,
        }
    })
    .await;
    ctx.metrics.reconciled("bundle", result.is_ok());
    result.map_err(|e| match e {
        FinalizerError::Apply(e) | FinalizerError::Cleanup(e) => e,
        FinalizerError::Write(e) => Error::Write(e),
        other => Error::Finalizer(other.to_string()),
    })
}

async fn apply(bundle: &Bundle, ctx: &Context) -> Result<Action, Error> {
    let namespace = bundle.namespace().unwrap_or_default();
    let name = bundle.name_any();
    let existing = owned_deployments(ctx, &namespace, &name);
    // Every cluster the Bundle may target (about 4 KiB each) is needed to decide the targets
    // and the rollout only: freed before the writes, which take longest.
    let candidates = ctx.candidates(bundle);
    // Room to plan a BundleDeployment for each, within the term's budget.
    let mut budget = ctx.plan_budget.reserve(candidates.len()).await;
    let shards = ctx.dynamic_shards();
    let bundle_shard = shards.map(|s| (s.shard_of(&shard_key(bundle)), s.shards()));
    let label = |bd: &mut BundleDeployment| {
        if let (Some(shards), Some((shard, count))) = (shards, bundle_shard) {
            plan::label_shards(bd, shard, count, |key| shards.shard_of(key));
        }
    };
    let planned = plan_targets(bundle, &candidates, &existing, label);
    drop(candidates);
    let (content, targets, rollout) = match planned {
        Ok(planned) => planned,
        Err(message) => {
            tracing::warn!(bundle = %name, %namespace, error = %message, "cannot target bundle");
            return stalled(bundle, ctx, message, Duration::from_secs(60)).await;
        }
    };
    ctx.memory
        .set_targeting_error((namespace.clone(), name.clone()), None);
    ensure_content(ctx, &content).await?;
    drop(content);
    let placed: Vec<plan::Key> = targets.iter().map(|t| t.key.clone()).collect();
    let credentials_waiting = match crate::helm_secrets::distribute(ctx, bundle, &placed).await {
        Ok(waiting) => waiting,
        Err(crate::helm_secrets::Error::NotLeading(e)) => return Err(e.into()),
        Err(e) => {
            tracing::warn!(bundle = %name, %namespace, error = %e, "cannot copy the Helm repository credentials");
            return stalled(bundle, ctx, e.to_string(), Duration::from_secs(30)).await;
        }
    };
    let (changes, expecting) = match plan_writes(ctx, targets, &placed, rollout.as_ref(), &existing)
    {
        Ok(planned) => planned,
        Err(e) => {
            let message = format!("cannot plan its BundleDeployments: {e}");
            tracing::warn!(bundle = %name, %namespace, error = %e, "cannot plan bundle");
            return stalled(bundle, ctx, message, Duration::from_secs(60)).await;
        }
    };
    budget.keep(changes.create.len() + changes.update.len());
    tracing::debug!(
        bundle = %name,
        %namespace,
        create = changes.create.len(),
        update = changes.update.len(),
        prune = changes.prune.len(),
        "bundle deployments planned"
    );
    apply_changes(ctx, changes, &existing, &mut budget).await?;
    drop(budget);
    if let Some((shard, shards)) = bundle_shard {
        // After the writes, which the label does not hold up.
        label_bundle(ctx, bundle, shard, shards).await?;
    }
    if credentials_waiting > 0 {
        // Their namespaces exist now that the BundleDeployments are written.
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    // The status follows from the BundleDeployments' events (`reconcile_status`).
    match rollout.map(|p| p.held_back()) {
        Some(held) if held > 0 => {
            tracing::info!(bundle = %name, %namespace, held_back = held, "rollout: waiting for clusters to become available");
            Ok(Action::requeue(ROLLOUT_RECHECK))
        }
        _ if expecting => Ok(Action::requeue(fleet_runtime::expectations::TTL)),
        _ => Ok(Action::await_change()),
    }
}

/// What `bundle` should deploy on the `candidates`: its Content, a BundleDeployment per
/// target, `label`led and [`Planned`] as soon as it is built (the candidates are freed after
/// this), and the rollout over them; or why not.
fn plan_targets(
    bundle: &Bundle,
    candidates: &[deployments::Candidate],
    existing: &BTreeMap<plan::Key, Arc<Deployed>>,
    label: impl Fn(&mut BundleDeployment),
) -> Result<(Content, Vec<Planned>, Option<rollout::Plan>), String> {
    let desired = deployments::desired_as(bundle, candidates, |mut bd| {
        label(&mut bd);
        Planned::of(bd)
    })
    .map_err(|e| e.to_string())?;
    let rollout = plan_rollout(bundle, &desired.targets, existing)?;
    let deployments::Desired { content, targets } = desired;
    let targets = targets.into_iter().map(|t| t.deployment).collect();
    Ok((content, targets, rollout))
}

/// The changes that make the Bundle's BundleDeployments what `targets` (of these `keys`)
/// want, counting the writes the cache does not show yet as made; and whether any such write
/// was counted (the Bundle is then looked at again after the expectations' TTL, in case the
/// cache never shows them: deleted meanwhile).
fn plan_writes(
    ctx: &Context,
    targets: Vec<Planned>,
    keys: &[plan::Key],
    rollout: Option<&rollout::Plan>,
    existing: &BTreeMap<plan::Key, Arc<Deployed>>,
) -> Result<(inventory::Changes<plan::Key, Planned>, bool), serde_json::Error> {
    let written = ctx.memory.written.pending(
        keys,
        |key| {
            existing.get(key).map(|bd| Seen {
                hash: bd.stamp(),
                resource_version: bd.metadata.resource_version.as_deref(),
            })
        },
        std::time::Instant::now(),
    );
    let expecting = !written.is_empty();
    Ok((
        plan::deployments(targets, rollout, existing, written)?,
        expecting,
    ))
}

/// A Bundle that cannot be deployed, and `why`: its status says so (and its shard label, so
/// that it leaves the other replicas' caches); looked at again after `again`.
async fn stalled(
    bundle: &Bundle,
    ctx: &Context,
    why: String,
    again: Duration,
) -> Result<Action, Error> {
    let key = (bundle.namespace().unwrap_or_default(), bundle.name_any());
    ctx.memory.set_targeting_error(key, Some(why));
    write_status(bundle, ctx).await?;
    if let Some(shards) = ctx.dynamic_shards() {
        let shard = shards.shard_of(&shard_key(bundle));
        label_bundle(ctx, bundle, shard, shards.shards()).await?;
    }
    Ok(Action::requeue(again))
}

/// Labels a Bundle with its dynamic shard when it lacks the label, so that only the
/// replicas of that shard cache it (Bundles hold their resources: the largest objects the
/// controller reads). Until then, every replica caches it.
async fn label_bundle(
    ctx: &Context,
    bundle: &Bundle,
    bundle_shard: u32,
    shards: u32,
) -> Result<(), Error> {
    let Some((key, value)) = plan::bundle_shard_label(bundle.labels(), bundle_shard, shards) else {
        return Ok(());
    };
    let api: Api<Bundle> =
        Api::namespaced(ctx.client.clone(), &bundle.namespace().unwrap_or_default());
    let patch = serde_json::json!({"metadata": {"labels": {key: value}}});
    ctx.writer()
        .patch(
            &api,
            &bundle.name_any(),
            &PatchParams::default(),
            &Patch::Merge(patch),
        )
        .await?;
    ctx.metrics.writes.inc();
    Ok(())
}

/// Writes the planned BundleDeployments (`write_concurrency` at once) and deletes the pruned
/// ones, each request under the claim. Each write gives its room in the plan budget back as
/// it ends.
async fn apply_changes(
    ctx: &Context,
    changes: inventory::Changes<plan::Key, Planned>,
    existing: &BTreeMap<plan::Key, Arc<Deployed>>,
    budget: &mut Reserved,
) -> Result<(), Error> {
    ctx.check_leading()?;
    let writes = changes
        .create
        .into_iter()
        .map(|bd| (true, bd))
        .chain(changes.update.into_iter().map(|bd| (false, bd)))
        .map(|(new, bd)| (new, bd, budget.unit()));
    let results: Vec<Result<(), Error>> = futures::stream::iter(writes)
        .map(|(new, bd, room)| async move {
            let written = write_deployment(ctx, bd, new).await;
            drop(room);
            written
        })
        .buffer_unordered(ctx.settings.write_concurrency.max(1))
        .collect()
        .await;
    results.into_iter().collect::<Result<Vec<()>, Error>>()?;
    for key in &changes.prune {
        if let Some(bd) = existing.get(key) {
            delete_deployment(ctx, bd).await?;
        }
    }
    Ok(())
}

/// While a rollout holds clusters back, it is looked at again this often.
const ROLLOUT_RECHECK: Duration = Duration::from_secs(5);

/// The rollout of a Bundle change over its targets (`None` while paused: nothing moves).
fn plan_rollout(
    bundle: &Bundle,
    targets: &[deployments::Target<'_, Planned>],
    existing: &BTreeMap<(String, String), Arc<Deployed>>,
) -> Result<Option<rollout::Plan>, String> {
    if bundle.spec.paused {
        return Ok(None);
    }
    let slots: Vec<rollout::Slot<'_>> = targets
        .iter()
        .map(|t| rollout::Slot {
            cluster: t.cluster,
            current: existing
                .get(&t.deployment.key)
                .map(|bd| bd.as_ref() as &dyn rollout::Current),
            wanted: &t.deployment_id,
        })
        .collect();
    rollout::plan(bundle.spec.rollout_strategy.as_ref(), &slots)
        .map(Some)
        .map_err(|e| format!("rolloutStrategy: {e}"))
}

/// Reconciles one Bundle's status: the roll-up of its BundleDeployments. A controller of its
/// own (triggered by BundleDeployment changes, debounced), so that a fan-out's writes are
/// not slowed by status writes and a burst of BundleDeployment events costs one status write.
pub async fn reconcile_status(bundle: Arc<Bundle>, ctx: Arc<Context>) -> Result<Action, Error> {
    if bundle.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let result = write_status(&bundle, &ctx).await;
    ctx.metrics.reconciled("bundle-status", result.is_ok());
    result.map(|()| Action::await_change())
}

/// Deletes the Bundle's BundleDeployments before the Bundle goes.
async fn cleanup(bundle: &Bundle, ctx: &Context) -> Result<Action, Error> {
    let namespace = bundle.namespace().unwrap_or_default();
    for bd in owned_deployments(ctx, &namespace, &bundle.name_any()).values() {
        delete_deployment(ctx, bd).await?;
    }
    Ok(Action::await_change())
}

/// The Bundle's BundleDeployments in the cache, by (namespace, name).
fn owned_deployments(
    ctx: &Context,
    namespace: &str,
    name: &str,
) -> BTreeMap<(String, String), Arc<Deployed>> {
    ctx.caches
        .deployments
        .state()
        .into_iter()
        .filter(|bd| {
            bd.label(BUNDLE_NAME) == Some(name) && bd.label(BUNDLE_NAMESPACE) == Some(namespace)
        })
        .map(|bd| ((bd.namespace().unwrap_or_default(), bd.name_any()), bd))
        .collect()
}

/// Writes a planned BundleDeployment: a create when it is not in the cache (cheaper for the
/// API server than an apply, and the common case of a fan-out), else a server-side apply,
/// which also takes over an object that exists after all.
async fn write_deployment(ctx: &Context, planned: Planned, new: bool) -> Result<(), Error> {
    let Planned {
        key: (namespace, name),
        hash,
        ..
    } = &planned;
    let api: Api<BundleDeployment> = Api::namespaced(ctx.client.clone(), namespace);
    // At most `write_concurrency` writes in flight across all Bundles.
    let _slot = ctx.write_slots.acquire().await.map_err(|_| NotLeading)?;
    // Decoded only now: until its slot, it waited as JSON.
    let bd = planned.deployment().map_err(|source| Error::Planned {
        what: format!("{namespace}/{name}"),
        source,
    })?;
    // Each request asks the claim right before it goes out.
    let writer = ctx.writer();
    let apply = || async {
        writer
            .patch(
                &api,
                name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&bd),
            )
            .await
    };
    let mut result = if new {
        match writer.create(&api, &bd).await {
            Err(e) if e.is_conflict() => apply().await,
            other => other,
        }
    } else {
        apply().await
    };
    // The cluster's namespace is not there yet (its Cluster was just created).
    if result.as_ref().is_err_and(WriteError::is_not_found) {
        crate::namespaces::ensure(ctx, namespace, &bd).await?;
        result = apply().await;
    }
    let written = result?;
    ctx.metrics.writes.inc();
    ctx.memory.written.written(
        planned.key.clone(),
        hash.clone(),
        written.metadata.resource_version.as_deref(),
        std::time::Instant::now(),
    );
    Ok(())
}

/// Deletes a BundleDeployment (and the Helm repository credentials copied next to it).
async fn delete_deployment(ctx: &Context, bd: &Deployed) -> Result<(), Error> {
    let (namespace, name) = (bd.namespace().unwrap_or_default(), bd.name_any());
    crate::context::delete::<BundleDeployment>(ctx, &namespace, &name).await?;
    ctx.memory
        .written
        .deleted(&(namespace.clone(), name.clone()));
    if bd.spec.from_helm_op() {
        crate::helm_secrets::remove(ctx, &namespace, &name).await?;
    }
    Ok(())
}

/// Creates the Content once; its name is its hash, so an existing one is the same.
async fn ensure_content(ctx: &Context, content: &Content) -> Result<(), Error> {
    let name = content.metadata.name.clone().unwrap_or_default();
    if ctx.memory.knows_content(&name) {
        return Ok(());
    }
    let api: Api<Content> = Api::all(ctx.client.clone());
    match ctx.writer().create(&api, content).await {
        Ok(_) => {
            ctx.metrics.writes.inc();
        }
        Err(e) if e.is_conflict() => {}
        Err(e) => return Err(e.into()),
    }
    ctx.memory.content_exists(name);
    Ok(())
}

/// The Bundle's status from its BundleDeployments in the cache; written when it changed.
async fn write_status(bundle: &Bundle, ctx: &Context) -> Result<(), Error> {
    let namespace = bundle.namespace().unwrap_or_default();
    let name = bundle.name_any();
    let error = ctx
        .memory
        .targeting_error(&(namespace.clone(), name.clone()));
    let owned = owned_deployments(ctx, &namespace, &name);
    // Explicit partitions select clusters by labels and groups: only then are the Clusters
    // looked up; otherwise their names (from the BundleDeployments' labels) are enough.
    let explicit = bundle
        .spec
        .rollout_strategy
        .as_ref()
        .is_some_and(|s| !s.partitions.is_empty());
    let candidates = explicit.then(|| ctx.candidates(bundle));
    let clusters = candidates
        .as_deref()
        .map(|candidates| candidates.iter().map(|c| &c.info).collect());
    let now = jiff::Timestamp::now().to_string();
    let current = bundle.status.clone().unwrap_or_default();
    let next = status::next(bundle, &owned, clusters, error, &now);
    if next == current {
        return Ok(());
    }
    tracing::debug!(bundle = %name, %namespace, "bundle status changed");
    ctx.check_leading()?;
    crate::context::apply_status::<Bundle>(ctx, &namespace, &name, status::patch(&next)).await?;
    Ok(())
}

/// How the controller retries a failed Bundle reconcile.
pub fn error_policy(bundle: Arc<Bundle>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(bundle = %bundle.name_any(), namespace = ?bundle.namespace(), %error, "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(5))
}

/// The Bundle reconcilers of a term: Bundles (on their own changes, and when targeting may
/// have changed: a Cluster's labels or template values, a ClusterGroup's selector, a
/// BundleNamespaceMapping, a mapped namespace's labels) and their status (on their
/// BundleDeployments' changes, debounced).
pub async fn run(term: &Term) {
    let caches = &term.caches;
    let workers = term.ctx.settings.workers;
    let (b1, b2, b3, b4) = (
        caches.bundles.reader(),
        caches.bundles.reader(),
        caches.bundles.reader(),
        caches.bundles.reader(),
    );
    let (m1, m2) = (caches.mappings.reader(), caches.mappings.reader());
    let cluster_changed = when_changed::<Cluster>(targeting_fingerprint);
    let group_changed = when_changed::<ClusterGroup>(group_fingerprint);
    let namespace_changed =
        when_changed::<Namespace>(|n| serde_json::json!(n.labels()).to_string());
    let bundles = term
        .controller(&caches.bundles)
        .await
        .watches_shared_stream(caches.clusters.changes().await, move |c| {
            if !cluster_changed(&c) {
                return Vec::new();
            }
            // Bundles of its namespace, and of namespaces that map others.
            let mut refs = in_namespace(&b1, c.namespace());
            for namespace in mapping_namespaces(&m1) {
                if Some(&namespace) != c.namespace().as_ref() {
                    refs.extend(in_namespace(&b1, Some(namespace)));
                }
            }
            refs
        })
        .watches_shared_stream(caches.mappings.changes().await, move |m| {
            in_namespace(&b3, m.namespace())
        })
        .watches_shared_stream(caches.namespaces.changes().await, move |n| {
            if !namespace_changed(&n) {
                return Vec::new();
            }
            mapping_namespaces(&m2)
                .into_iter()
                .flat_map(|namespace| in_namespace(&b4, Some(namespace)))
                .collect()
        })
        .watches_shared_stream(caches.groups.changes().await, move |g| {
            if group_changed(&g) {
                in_namespace(&b2, g.namespace())
            } else {
                Vec::new()
            }
        });
    let status = term
        .controller(&caches.bundles)
        .await
        .watches_shared_stream(caches.deployments.changes().await, |bd| {
            label_ref::<Bundle>(bd.as_ref(), BUNDLE_NAME, BUNDLE_NAMESPACE)
        });
    futures::join!(
        term.run_keyed(
            bundles,
            term.workers(workers.bundles),
            shard_key,
            "bundle",
            reconcile,
            error_policy
        ),
        term.run_keyed(
            status,
            term.rollup(workers.rollups),
            shard_key,
            "bundle-status",
            reconcile_status,
            retry
        ),
    );
}

/// A Bundle is sharded with the GitRepo or HelmOp it comes from.
pub fn shard_key(bundle: &Bundle) -> String {
    fleet_api::sharding::bundle_shard_key(&bundle.metadata)
}

/// Targeting depends on a Cluster's labels, template values and namespace, not on the rest
/// of its status (which changes with every roll-up): a fingerprint of what matters.
fn targeting_fingerprint(cluster: &Cluster) -> String {
    serde_json::json!([
        cluster.labels(),
        cluster.annotations(),
        cluster.spec.template_values,
        cluster.status.as_ref().and_then(|s| s.namespace.clone()),
        cluster.metadata.deletion_timestamp.is_some(),
    ])
    .to_string()
}

fn group_fingerprint(group: &ClusterGroup) -> String {
    serde_json::json!([group.labels(), group.spec.selector]).to_string()
}

/// The namespaces holding BundleNamespaceMappings.
fn mapping_namespaces(store: &Store<BundleNamespaceMapping>) -> std::collections::BTreeSet<String> {
    store.state().iter().filter_map(|m| m.namespace()).collect()
}
