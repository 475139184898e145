//! The identities the controller grants: ServiceAccounts, their Roles and bindings, and
//! their token Secrets (for import tokens and registered agents), created once and left
//! alone afterwards.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use kube::api::ObjectMeta;
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use fleet_api::naming::safe_concat_name;

use crate::context::Context;
use crate::error::Error;

fn api_error(action: &'static str, what: String) -> impl FnOnce(kube::Error) -> Error {
    move |source| Error::Api {
        action,
        what,
        source,
    }
}

/// Creates `object` unless it exists (a create that conflicts is fine: names are derived).
pub async fn create<K>(ctx: &Context, namespace: Option<&str>, object: &K) -> Result<(), Error>
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + Serialize
        + DeserializeOwned
        + std::fmt::Debug,
{
    let namespace = namespace.unwrap_or_default();
    let api: Api<K> = Api::namespaced(ctx.client.clone(), namespace);
    match ctx.writer().create(&api, object).await {
        Ok(_) => {
            ctx.metrics.writes.inc();
        }
        Err(e) if e.is_conflict() => {}
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

pub fn meta(name: &str, namespace: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(namespace.to_owned()),
        labels: Some(BTreeMap::from([(
            fleet_api::labels::MANAGED.to_owned(),
            "true".to_owned(),
        )])),
        ..ObjectMeta::default()
    }
}

pub fn rule(group: &str, resources: &[&str], verbs: &[&str], names: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![group.to_owned()]),
        resources: Some(resources.iter().map(|r| (*r).to_owned()).collect()),
        verbs: verbs.iter().map(|v| (*v).to_owned()).collect(),
        resource_names: (!names.is_empty())
            .then(|| names.iter().map(|n| (*n).to_owned()).collect()),
        ..PolicyRule::default()
    }
}

/// A Role with `rules` in `namespace`, bound to ServiceAccount `sa_namespace/sa`.
pub async fn grant(
    ctx: &Context,
    namespace: &str,
    name: &str,
    rules: Vec<PolicyRule>,
    sa_namespace: &str,
    sa: &str,
) -> Result<(), Error> {
    let role = Role {
        metadata: meta(name, namespace),
        rules: Some(rules),
    };
    create(ctx, Some(namespace), &role).await?;
    let binding = RoleBinding {
        metadata: meta(name, namespace),
        role_ref: role_ref("Role", name),
        subjects: Some(service_account(sa_namespace, sa)),
    };
    create(ctx, Some(namespace), &binding).await
}

fn role_ref(kind: &str, name: &str) -> RoleRef {
    RoleRef {
        api_group: Some("rbac.authorization.k8s.io".to_owned()),
        kind: kind.to_owned(),
        name: name.to_owned(),
    }
}

fn service_account(namespace: &str, name: &str) -> Vec<Subject> {
    vec![Subject {
        kind: "ServiceAccount".to_owned(),
        name: name.to_owned(),
        namespace: Some(namespace.to_owned()),
        ..Subject::default()
    }]
}

/// Agents read Contents (cluster-scoped; named by content hash) by name.
pub async fn grant_contents(ctx: &Context, sa_namespace: &str, sa: &str) -> Result<(), Error> {
    const READER: &str = "fleet-agent-content-reader";
    ctx.check_leading()?;
    let role = ClusterRole {
        metadata: ObjectMeta {
            name: Some(READER.to_owned()),
            ..ObjectMeta::default()
        },
        rules: Some(vec![rule("fleet.cattle.io", &["contents"], &["get"], &[])]),
        ..ClusterRole::default()
    };
    let binding = ClusterRoleBinding {
        metadata: ObjectMeta {
            name: Some(safe_concat_name(&[sa_namespace, sa, "contents"])),
            ..ObjectMeta::default()
        },
        role_ref: role_ref("ClusterRole", READER),
        subjects: Some(service_account(sa_namespace, sa)),
    };
    let writer = ctx.writer();
    for result in [
        writer
            .create(&Api::<ClusterRole>::all(ctx.client.clone()), &role)
            .await
            .map(|_| ()),
        writer
            .create(
                &Api::<ClusterRoleBinding>::all(ctx.client.clone()),
                &binding,
            )
            .await
            .map(|_| ()),
    ] {
        match result {
            Ok(()) => {
                ctx.metrics.writes.inc();
            }
            Err(e) if e.is_conflict() => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// A ServiceAccount with a long-lived token Secret; returns the token once the token
/// controller has filled it in.
pub async fn service_account_token(
    ctx: &Context,
    namespace: &str,
    name: &str,
) -> Result<Option<String>, Error> {
    create(
        ctx,
        Some(namespace),
        &ServiceAccount {
            metadata: meta(name, namespace),
            ..ServiceAccount::default()
        },
    )
    .await?;
    let secret_name = format!("{name}-token");
    let mut secret = Secret {
        metadata: meta(&secret_name, namespace),
        type_: Some("kubernetes.io/service-account-token".to_owned()),
        ..Secret::default()
    };
    secret.annotations_mut().insert(
        "kubernetes.io/service-account.name".to_owned(),
        name.to_owned(),
    );
    create(ctx, Some(namespace), &secret).await?;
    let current = Api::<Secret>::namespaced(ctx.client.clone(), namespace)
        .get_opt(&secret_name)
        .await
        .map_err(api_error(
            "reading",
            format!("Secret {namespace}/{secret_name}"),
        ))?;
    Ok(current
        .and_then(|s| s.data)
        .and_then(|d| d.get("token").cloned())
        .map(|t| String::from_utf8_lossy(&t.0).into_owned()))
}
