//! Waiting for conditions instead of sleeping.

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;

use crate::Error;

/// The field manager the testkit writes with.
pub const FIELD_MANAGER: &str = "fleet-testkit";

/// Waits (with a watch, not polling) until the named object satisfies `condition`, and returns
/// it. On timeout the error shows the object as last seen.
pub async fn wait_for<K>(
    api: &Api<K>,
    name: &str,
    timeout: Duration,
    condition: impl Fn(&K) -> bool,
) -> Result<K, Error>
where
    K: Resource + Clone + Debug + DeserializeOwned + Send + 'static,
{
    let cond = |obj: Option<&K>| obj.is_some_and(&condition);
    match tokio::time::timeout(timeout, await_condition(api.clone(), name, cond)).await {
        Ok(Ok(Some(obj))) => Ok(obj),
        Ok(Ok(None)) => Err(Error::Timeout {
            what: format!("object {name}"),
            detail: "it was deleted".to_owned(),
        }),
        Ok(Err(e)) => Err(Error::Timeout {
            what: format!("object {name}"),
            detail: format!("watch failed: {e}"),
        }),
        Err(_) => {
            let last = api.get_opt(name).await;
            Err(Error::Timeout {
                what: format!("a condition on {name} (after {timeout:?})"),
                detail: format!("last seen: {last:#?}"),
            })
        }
    }
}

/// Waits until the named object no longer exists.
pub async fn wait_deleted<K>(api: &Api<K>, name: &str, timeout: Duration) -> Result<(), Error>
where
    K: Resource + Clone + Debug + DeserializeOwned + Send + 'static,
{
    let gone = await_condition(api.clone(), name, |obj: Option<&K>| obj.is_none());
    match tokio::time::timeout(timeout, gone).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(Error::Timeout {
            what: format!("deletion of {name}"),
            detail: format!("watch failed: {e}"),
        }),
        Err(_) => Err(Error::Timeout {
            what: format!("deletion of {name} (after {timeout:?})"),
            detail: format!("last seen: {:#?}", api.get_opt(name).await),
        }),
    }
}

/// Re-evaluates `check` every `interval` until it returns `Ok`, for conditions that span
/// several objects or processes (e.g. "exactly one leader"). The last `Err` explains a timeout.
pub async fn eventually<T, F, Fut>(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut check: F,
) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match check().await {
            Ok(value) => return Ok(value),
            Err(last) if tokio::time::Instant::now() >= deadline => {
                return Err(Error::Timeout {
                    what: format!("{what} (after {timeout:?})"),
                    detail: last,
                });
            }
            Err(_) => tokio::time::sleep(interval).await,
        }
    }
}

/// Lists `api` until at least `count` objects satisfy `condition`, and returns those (for
/// "every cluster registered" and the like, where no single object says it).
pub async fn wait_for_count<K>(
    api: &Api<K>,
    what: &str,
    count: usize,
    timeout: Duration,
    condition: impl Fn(&K) -> bool,
) -> Result<Vec<K>, Error>
where
    K: Resource + Clone + Debug + DeserializeOwned,
{
    let condition = &condition;
    eventually(what, timeout, Duration::from_millis(200), || async move {
        let items = api
            .list(&Default::default())
            .await
            .map_err(|e| e.to_string())?
            .items;
        let matching: Vec<K> = items.into_iter().filter(|k| condition(k)).collect();
        if matching.len() >= count {
            Ok(matching)
        } else {
            Err(format!("{}/{count} so far", matching.len()))
        }
    })
    .await
}

/// A started control plane with `crds` established and `namespace` created: what most
/// component tests start from.
pub async fn plane_with(
    crds: &[CustomResourceDefinition],
    namespace: &str,
) -> Result<crate::ControlPlane, Error> {
    let plane = crate::ControlPlane::start().await?;
    let client = plane.client();
    apply_crds(&client, crds).await?;
    let mut object = k8s_openapi::api::core::v1::Namespace::default();
    object.metadata.name = Some(namespace.to_owned());
    Api::<k8s_openapi::api::core::v1::Namespace>::all(client)
        .create(&kube::api::PostParams::default(), &object)
        .await
        .map_err(Error::Kube)?;
    Ok(plane)
}

/// Applies CRDs (server-side) and waits until each is established.
pub async fn apply_crds(client: &Client, crds: &[CustomResourceDefinition]) -> Result<(), Error> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply(FIELD_MANAGER).force();
    for crd in crds {
        let name = crd.metadata.name.clone().unwrap_or_default();
        api.patch(&name, &params, &Patch::Apply(crd))
            .await
            .map_err(Error::Kube)?;
    }
    for crd in crds {
        let name = crd.metadata.name.clone().unwrap_or_default();
        let established = await_condition(api.clone(), &name, conditions::is_crd_established());
        match tokio::time::timeout(Duration::from_secs(30), established).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                return Err(Error::Timeout {
                    what: format!("CRD {name} established"),
                    detail: e.to_string(),
                });
            }
            Err(_) => {
                return Err(Error::Timeout {
                    what: format!("CRD {name} established (after 30s)"),
                    detail: format!("last seen: {:#?}", api.get_opt(&name).await),
                });
            }
        }
    }
    Ok(())
}

/// Waits until the controller has answered the ClusterRegistrationToken `token` in
/// `namespace` with its Secret (of the same name), and writes the agent values it holds to
/// `path`: the file a user hands to the agent chart (`--values`) or to the agent
/// (`--registration-values`).
pub async fn write_token_values(
    client: &Client,
    namespace: &str,
    token: &str,
    path: &std::path::Path,
    timeout: Duration,
) -> Result<(), Error> {
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(client.clone(), namespace);
    let secret = wait_for(&secrets, token, timeout, |s| {
        s.data.as_ref().is_some_and(|d| d.contains_key("values"))
    })
    .await?;
    let values = secret
        .data
        .as_ref()
        .and_then(|d| d.get("values"))
        .ok_or_else(|| Error::Config {
            message: format!("Secret {namespace}/{token} holds no values"),
        })?;
    std::fs::write(path, &values.0).map_err(|e| Error::io(path, e))
}
