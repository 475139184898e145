//! A reconcile behind a finalizer, with the finalizer's writes through the [`Writer`] (the
//! claim checked right before each), as kube-runtime's `finalizer()` does it otherwise:
//! - the finalizer is added before the first `Apply` (a JSON patch that first tests the list it
//!   saw, so two writers never add it twice);
//! - on deletion, `Cleanup` runs, and only once it succeeds is the finalizer removed (a JSON
//!   patch that tests the entry is still ours at that index).

use std::fmt::Debug;
use std::sync::Arc;

use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::gate::{WriteError, Writer};

/// What the reconcile is asked to do.
#[derive(Debug)]
pub enum Event<K> {
    /// The object exists (and carries the finalizer).
    Apply(Arc<K>),
    /// The object is being deleted: clean up; the finalizer goes once this succeeds.
    Cleanup(Arc<K>),
}

/// Why a finalized reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum FinalizerError<E: std::error::Error + 'static> {
    #[error(transparent)]
    Apply(E),
    #[error(transparent)]
    Cleanup(E),
    #[error("adding or removing the finalizer: {0}")]
    Write(#[source] WriteError),
    #[error("the finalizer patch: {0}")]
    Patch(#[source] serde_json::Error),
}

/// Runs `reconcile` for `object` behind `finalizer`, writing the finalizer through `writer`.
pub async fn finalized<K, F, Fut, E>(
    writer: &Writer,
    api: &Api<K>,
    finalizer: &str,
    object: Arc<K>,
    reconcile: F,
) -> Result<Action, FinalizerError<E>>
where
    K: Resource + Clone + DeserializeOwned + Serialize + Debug,
    K::DynamicType: Default,
    F: FnOnce(Event<K>) -> Fut,
    Fut: Future<Output = Result<Action, E>>,
    E: std::error::Error + 'static,
{
    let name = object.name_any();
    let index = object.finalizers().iter().position(|f| f == finalizer);
    let deleting = object.meta().deletion_timestamp.is_some();
    let patch = match (index, deleting) {
        (Some(_), false) => {
            return reconcile(Event::Apply(object))
                .await
                .map_err(FinalizerError::Apply);
        }
        (None, true) => return Ok(Action::await_change()),
        (Some(index), true) => {
            let action = reconcile(Event::Cleanup(object))
                .await
                .map_err(FinalizerError::Cleanup)?;
            let path = format!("/metadata/finalizers/{index}");
            let patch = json!([
                {"op": "test", "path": path, "value": finalizer},
                {"op": "remove", "path": path},
            ]);
            send(writer, api, &name, patch).await?;
            return Ok(action);
        }
        (None, false) if object.finalizers().is_empty() => json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": [finalizer]},
        ]),
        (None, false) => json!([
            {"op": "test", "path": "/metadata/finalizers", "value": object.finalizers()},
            {"op": "add", "path": "/metadata/finalizers/-", "value": finalizer},
        ]),
    };
    send(writer, api, &name, patch).await?;
    // The patch wakes the reconcile again, now with the finalizer.
    Ok(Action::await_change())
}

async fn send<K, E>(
    writer: &Writer,
    api: &Api<K>,
    name: &str,
    patch: serde_json::Value,
) -> Result<(), FinalizerError<E>>
where
    K: Resource + Clone + DeserializeOwned + Debug,
    K::DynamicType: Default,
    E: std::error::Error + 'static,
{
    let patch: json_patch::Patch = serde_json::from_value(patch).map_err(FinalizerError::Patch)?;
    writer
        .patch(
            api,
            name,
            &PatchParams::default(),
            &Patch::Json::<()>(patch),
        )
        .await
        .map_err(FinalizerError::Write)?;
    Ok(())
}
