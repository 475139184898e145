//! Writing a BundleDeployment's status upstream: only while the role's Lease is held (the
//! role's [`Writer`] checks it right before the request).

use fleet_api::BundleDeployment;
use fleet_runtime::Writer;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt};

use crate::Error;

/// Whether a status patch may overwrite a status written since `bd` was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// The patch is the newest word (a deploy just happened): it is written as it is.
    Authoritative,
    /// The patch was built from `bd` as read (a monitoring scan): it is sent with `bd`'s
    /// resourceVersion and refused (409) if the deploying role wrote in between, so a scan
    /// never undoes a newer deploy's status; the next scan reads again.
    IfUnchanged,
}

/// Merges `patch` into `bd`'s status.
pub async fn status(
    upstream: &Client,
    writer: &Writer,
    bd: &BundleDeployment,
    mut patch: serde_json::Value,
    freshness: Freshness,
) -> Result<(), Error> {
    if freshness == Freshness::IfUnchanged
        && let Some(version) = bd.resource_version()
    {
        patch["metadata"] = serde_json::json!({ "resourceVersion": version });
    }
    let api =
        Api::<BundleDeployment>::namespaced(upstream.clone(), &bd.namespace().unwrap_or_default());
    writer
        .patch_status(
            &api,
            &bd.name_any(),
            &PatchParams::default(),
            &Patch::Merge(patch),
        )
        .await?;
    Ok(())
}
