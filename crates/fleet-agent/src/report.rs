//! Writing a BundleDeployment's status upstream: only while the role's Lease is held
//! ([`Leadership::still_leading`], checked right before the request).

use fleet_api::BundleDeployment;
use fleet_election::Leadership;
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
    leadership: &Leadership,
    bd: &BundleDeployment,
    mut patch: serde_json::Value,
    freshness: Freshness,
) -> Result<(), Error> {
    if freshness == Freshness::IfUnchanged
        && let Some(version) = bd.resource_version()
    {
        patch["metadata"] = serde_json::json!({ "resourceVersion": version });
    }
    if !leadership.still_leading() {
        return Err(Error::NotLeading);
    }
    let name = bd.name_any();
    Api::<BundleDeployment>::namespaced(upstream.clone(), &bd.namespace().unwrap_or_default())
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map_err(|source| Error::Api {
            action: format!("reporting the status of {name}"),
            source,
        })?;
    Ok(())
}
