//! Helm repository credentials for HelmOp bundles: the Secret a bundle's `helmOpOptions`
//! names (in the bundle's namespace) is copied into the namespace of each of its
//! BundleDeployments, where the agent may read it (`helm_repo_secret_name`). Only Fleet's
//! keys are copied (`username`, `password`, `cacerts`); a copy is written only when it
//! changed, and deleted with its BundleDeployment.

use std::collections::BTreeMap;

use fleet_api::labels::MANAGED;
use fleet_api::{Bundle, helm_repo_secret_name};
use fleet_runtime::WriteError;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ObjectMeta, Patch, PatchParams};
use kube::{Api, ResourceExt};

use crate::context::Context;

/// The keys copied.
const KEYS: [&str; 3] = ["username", "password", "cacerts"];

/// Why the credentials could not be copied (reported in the Bundle's status).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("helmOpSecretName {namespace}/{name} not found")]
    Missing { namespace: String, name: String },
    #[error(transparent)]
    NotLeading(#[from] crate::error::NotLeading),
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error("{action} {what}: {source}")]
    Api {
        action: &'static str,
        what: String,
        source: kube::Error,
    },
}

/// Copies the bundle's Helm repository Secret next to each of its BundleDeployments
/// (`deployments`: namespace and name). Returns how many copies wait for their namespace
/// (a cluster namespace not created yet: try again once the BundleDeployments are written).
pub async fn distribute(
    ctx: &Context,
    bundle: &Bundle,
    deployments: &[(String, String)],
) -> Result<usize, Error> {
    let Some(source) = bundle
        .spec
        .helm_op_options
        .as_ref()
        .and_then(|o| o.helm_op_secret_name.clone())
        .filter(|n| !n.is_empty())
    else {
        return Ok(0);
    };
    let namespace = bundle.namespace().unwrap_or_default();
    let secret = Api::<Secret>::namespaced(ctx.client.clone(), &namespace)
        .get_opt(&source)
        .await
        .map_err(|source_error| Error::Api {
            action: "reading",
            what: format!("Secret {namespace}/{source}"),
            source: source_error,
        })?
        .ok_or_else(|| Error::Missing {
            namespace: namespace.clone(),
            name: source.clone(),
        })?;
    let data: BTreeMap<String, ByteString> = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| KEYS.contains(&k.as_str()))
        .collect();
    let hash =
        fleet_render::deployments::sha256_hex(&serde_json::to_vec(&data).unwrap_or_default());
    let mut waiting = 0;
    for (bd_namespace, bd_name) in deployments {
        let name = helm_repo_secret_name(bd_name);
        let key = (bd_namespace.clone(), name.clone());
        if ctx.memory.helm_secret(&key).as_ref() == Some(&hash) {
            continue;
        }
        let copy = Secret {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(bd_namespace.clone()),
                labels: Some(BTreeMap::from([(MANAGED.to_owned(), "true".to_owned())])),
                ..ObjectMeta::default()
            },
            data: Some(data.clone()),
            ..Secret::default()
        };
        let api = Api::<Secret>::namespaced(ctx.client.clone(), bd_namespace);
        let written = ctx
            .writer()
            .patch(
                &api,
                &name,
                &PatchParams::apply(crate::error::MANAGER).force(),
                &Patch::Apply(serde_json::json!({
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": copy.metadata,
                    "data": copy.data,
                })),
            )
            .await;
        match written {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {
                waiting += 1;
                continue;
            }
            Err(e) => return Err(e.into()),
        }
        ctx.metrics.writes.inc();
        ctx.memory.set_helm_secret(key, Some(hash.clone()));
    }
    Ok(waiting)
}

/// Deletes the copy next to a BundleDeployment that goes.
pub async fn remove(ctx: &Context, namespace: &str, bd_name: &str) -> Result<(), WriteError> {
    let name = helm_repo_secret_name(bd_name);
    crate::context::delete::<Secret>(ctx, namespace, &name).await?;
    ctx.memory
        .set_helm_secret((namespace.to_owned(), name), None);
    Ok(())
}
