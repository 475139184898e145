//! Cluster registration, as Fleet's agent management does it.
//!
//! 1. A **ClusterRegistrationToken** `T` in a workspace namespace gets an import identity:
//!    ServiceAccount `import-T` whose token may only create ClusterRegistrations there and read
//!    Secrets (by exact name) in the registration namespace; the Secret `T` holds the `values`
//!    an agent needs (API server URL and CA, the namespaces, the import token). With
//!    `spec.ttl`, the token expires at `status.expires`: then the token, its identity and its
//!    Secret are deleted, so the import token stops working (401).
//! 2. A **ClusterRegistration** created with that token (`clientID`, `clientRandom`,
//!    `clusterLabels`) gets a Cluster `cluster-<hash of clientID>` (or the Cluster of this
//!    workspace that already has that clientID, as in Fleet: a manager-initiated import or a
//!    re-registration), the cluster's namespace, a ServiceAccount for the agent allowed exactly
//!    its own cluster namespace, reading its own Cluster and writing its status (not its
//!    labels: they decide what it receives), and the Secret `c-<clientID>-<clientRandom>` (unguessable without the
//!    random part) in the registration namespace with the agent's token.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use fleet_api::naming::safe_concat_name;
use fleet_api::registration_protocol::{
    Credentials, REGISTRATION_NAMESPACE, TokenValues, cluster_name, credentials_secret,
};
use fleet_api::{Cluster, ClusterRegistration, ClusterRegistrationToken, ClusterSpec};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};

use crate::context::{Context, delete, deployment_namespace, retry};
use crate::error::Error;
use crate::identities::{create, grant, grant_contents, meta, rule, service_account_token};
use crate::wiring::Term;

/// Reconciles one ClusterRegistrationToken.
pub async fn reconcile_token(
    token: Arc<ClusterRegistrationToken>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let result = apply_token(&token, &ctx).await;
    ctx.metrics.reconciled("token", result.is_ok());
    result
}

/// When a token expires: `ttl` after its creation (none without a `ttl`, or with `0`).
pub fn token_expiry(token: &ClusterRegistrationToken) -> Option<jiff::Timestamp> {
    let ttl = token
        .spec
        .ttl
        .as_deref()
        .and_then(|t| fleet_api::duration::parse_go_duration(t).ok())
        .filter(|d| !d.is_zero())?;
    let created = token.metadata.creation_timestamp.as_ref()?.0;
    created
        .checked_add(jiff::SignedDuration::try_from(ttl).ok()?)
        .ok()
}

async fn apply_token(token: &ClusterRegistrationToken, ctx: &Context) -> Result<Action, Error> {
    let namespace = token.namespace().unwrap_or_default();
    let name = token.name_any();
    let sa = format!("import-{name}");
    let expires = token_expiry(token);
    let now = jiff::Timestamp::now();
    if let Some(expires) = expires
        && expires <= now
    {
        return expire(ctx, &namespace, &name, &sa).await;
    }

    crate::namespaces::create(ctx, REGISTRATION_NAMESPACE, BTreeMap::new()).await?;
    grant(
        ctx,
        &namespace,
        &sa,
        vec![rule(
            "fleet.cattle.io",
            &["clusterregistrations"],
            &["create"],
            &[],
        )],
        &namespace,
        &sa,
    )
    .await?;
    grant(
        ctx,
        REGISTRATION_NAMESPACE,
        &format!("{sa}-{namespace}"),
        vec![rule("", &["secrets"], &["get"], &[])],
        &namespace,
        &sa,
    )
    .await?;
    let Some(import_token) = service_account_token(ctx, &namespace, &sa).await? else {
        return Ok(Action::requeue(Duration::from_millis(500)));
    };
    let values = TokenValues {
        api_server_url: ctx.settings.api_server_url.clone(),
        api_server_ca: ctx.settings.api_server_ca.clone(),
        cluster_namespace: namespace.clone(),
        system_registration_namespace: REGISTRATION_NAMESPACE.to_owned(),
        token: import_token,
    };
    let mut secret = Secret {
        metadata: meta(&name, &namespace),
        data: Some(values.to_data()),
        ..Secret::default()
    };
    secret.metadata.owner_references = token.controller_owner_ref(&()).map(|o| vec![o]);
    create(ctx, Some(&namespace), &secret).await?;

    let status = token.status.clone().unwrap_or_default();
    let expires_text = expires.map(|e| e.to_string());
    if status.secret_name.as_deref() != Some(name.as_str()) || status.expires != expires_text {
        let api = Api::<ClusterRegistrationToken>::namespaced(ctx.client.clone(), &namespace);
        let patch = serde_json::json!({"status": {"secretName": name, "expires": expires_text}});
        ctx.writer()
            .patch_status(&api, &name, &PatchParams::default(), &Patch::Merge(patch))
            .await?;
        ctx.metrics.writes.inc();
    }
    Ok(match expires {
        Some(expires) => Action::requeue(
            Duration::try_from(expires.duration_since(now)).unwrap_or_default()
                + Duration::from_millis(100),
        ),
        None => Action::await_change(),
    })
}

/// An expired token: its identity, Secret and the token itself go.
async fn expire(ctx: &Context, namespace: &str, name: &str, sa: &str) -> Result<Action, Error> {
    ctx.check_leading()?;
    tracing::info!(token = %name, %namespace, "registration token expired: deleting it and its import identity");
    let token_secret = format!("{sa}-token");
    delete::<ServiceAccount>(ctx, namespace, sa).await?;
    delete::<Secret>(ctx, namespace, &token_secret).await?;
    delete::<ClusterRegistrationToken>(ctx, namespace, name).await?;
    Ok(Action::await_change())
}

/// What a ClusterRegistration asks for.
#[derive(Debug, Clone)]
pub enum RegistrationPlan {
    /// Granted before: nothing to do.
    Granted,
    /// No clientID or clientRandom: nothing can be granted.
    Incomplete,
    /// Register the agent as `cluster` (created if missing) and grant it credentials.
    Grant {
        cluster: Box<Cluster>,
        client_id: String,
        client_random: String,
    },
}

/// The decision for `registration`, given the Clusters there are: a Cluster of its
/// workspace that already has its clientID is the one the agent registers as
/// (manager-initiated import, a re-registration), as in Fleet; otherwise
/// `cluster-<hash of clientID>`, labelled with the registration's cluster labels.
pub fn plan_registration(
    registration: &ClusterRegistration,
    clusters: &[Arc<Cluster>],
) -> RegistrationPlan {
    if registration.status.as_ref().is_some_and(|s| s.granted) {
        return RegistrationPlan::Granted;
    }
    let present = |value: &Option<String>| value.clone().filter(|v| !v.is_empty());
    let (Some(client_id), Some(client_random)) = (
        present(&registration.spec.client_id),
        present(&registration.spec.client_random),
    ) else {
        return RegistrationPlan::Incomplete;
    };
    let namespace = registration.namespace();
    let name = clusters
        .iter()
        .find(|c| {
            c.namespace() == namespace && c.spec.client_id.as_deref() == Some(client_id.as_str())
        })
        .map_or_else(|| cluster_name(&client_id), |c| c.name_any());
    let mut cluster = Cluster::new(
        &name,
        ClusterSpec {
            client_id: Some(client_id.clone()),
            ..ClusterSpec::default()
        },
    );
    cluster.metadata.namespace = namespace;
    cluster.metadata.labels = Some(registration.spec.cluster_labels.clone());
    RegistrationPlan::Grant {
        cluster: Box::new(cluster),
        client_id,
        client_random,
    }
}

/// Reconciles one ClusterRegistration.
pub async fn reconcile_registration(
    registration: Arc<ClusterRegistration>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let result = apply_registration(&registration, &ctx).await;
    ctx.metrics.reconciled("registration", result.is_ok());
    result
}

async fn apply_registration(
    registration: &ClusterRegistration,
    ctx: &Context,
) -> Result<Action, Error> {
    let namespace = registration.namespace().unwrap_or_default();
    let clusters = ctx.caches.clusters.state();
    let (cluster, client_id, client_random) = match plan_registration(registration, &clusters) {
        RegistrationPlan::Granted => return Ok(Action::await_change()),
        RegistrationPlan::Incomplete => {
            tracing::warn!(registration = %registration.name_any(), %namespace, "registration without clientID or clientRandom: ignored");
            return Ok(Action::await_change());
        }
        RegistrationPlan::Grant {
            cluster,
            client_id,
            client_random,
        } => (*cluster, client_id, client_random),
    };
    let name = cluster.name_any();
    create(ctx, Some(&namespace), &cluster).await?;
    let bd_namespace = deployment_namespace(&cluster);
    crate::namespaces::ensure(ctx, &bd_namespace, &cluster).await?;

    let sa = safe_concat_name(&["agent", &name]);
    grant_agent(ctx, &namespace, &name, &bd_namespace, &sa).await?;
    let Some(agent_token) = service_account_token(ctx, &namespace, &sa).await? else {
        return Ok(Action::requeue(Duration::from_millis(500)));
    };
    let credentials = Credentials {
        token: agent_token,
        cluster_name: name.clone(),
        cluster_namespace: namespace.clone(),
        deployment_namespace: bd_namespace,
        api_server_url: ctx.settings.api_server_url.clone().unwrap_or_default(),
        api_server_ca: ctx.settings.api_server_ca.clone().unwrap_or_default(),
    };
    let secret = Secret {
        metadata: meta(
            &credentials_secret(&client_id, &client_random),
            REGISTRATION_NAMESPACE,
        ),
        data: Some(credentials.to_data()),
        ..Secret::default()
    };
    create(ctx, Some(REGISTRATION_NAMESPACE), &secret).await?;
    let api = Api::<ClusterRegistration>::namespaced(ctx.client.clone(), &namespace);
    let patch = serde_json::json!({"status": {"clusterName": name, "granted": true}});
    ctx.writer()
        .patch_status(
            &api,
            &registration.name_any(),
            &PatchParams::default(),
            &Patch::Merge(patch),
        )
        .await?;
    ctx.metrics.writes.inc();
    tracing::info!(cluster = %name, %namespace, "cluster registered");
    Ok(Action::await_change())
}

/// The agent's identity `sa` for Cluster `namespace/name`: its own cluster namespace
/// (`bd_namespace`), its own Cluster's status, and Contents.
async fn grant_agent(
    ctx: &Context,
    namespace: &str,
    name: &str,
    bd_namespace: &str,
    sa: &str,
) -> Result<(), Error> {
    grant(
        ctx,
        bd_namespace,
        sa,
        vec![
            // update/patch: the agent's finalizer, so that a deleted one is uninstalled.
            rule(
                "fleet.cattle.io",
                &["bundledeployments"],
                &["get", "list", "watch", "update", "patch"],
                &[],
            ),
            rule(
                "fleet.cattle.io",
                &["bundledeployments/status"],
                &["get", "update", "patch"],
                &[],
            ),
            rule("", &["secrets"], &["get", "list", "watch"], &[]),
            // Events on its BundleDeployments (a chart that does not install).
            rule("events.k8s.io", &["events"], &["create"], &[]),
        ],
        namespace,
        sa,
    )
    .await?;
    grant(
        ctx,
        namespace,
        sa,
        // Its own Cluster: read it, report on its status; never patch the Cluster itself (its
        // labels decide which bundles it receives).
        vec![
            rule("fleet.cattle.io", &["clusters"], &["get"], &[name]),
            rule(
                "fleet.cattle.io",
                &["clusters/status"],
                &["get", "patch", "update"],
                &[name],
            ),
        ],
        namespace,
        sa,
    )
    .await?;
    grant_contents(ctx, namespace, sa).await?;
    Ok(())
}

/// The `values` of a token Secret (for imports and tests).
pub fn token_values(secret: &Secret) -> Option<TokenValues> {
    TokenValues::from_data(secret.data.as_ref()?).ok()
}

/// Registration for a term (the unsharded controller's): tokens and agents' registrations.
pub async fn run(term: &Term) {
    let caches = &term.caches;
    let workers = term.workers(term.ctx.settings.workers.rollups);
    let tokens = term.controller(&caches.tokens).await;
    let registrations = term.controller(&caches.registrations).await;
    futures::join!(
        term.run(
            tokens,
            workers.clone(),
            "registration-token",
            reconcile_token,
            retry
        ),
        term.run(
            registrations,
            workers,
            "registration",
            reconcile_registration,
            retry
        ),
    );
}

#[cfg(test)]
mod tests {
    use fleet_api::{
        ClusterRegistrationSpec, ClusterRegistrationStatus, ClusterRegistrationTokenSpec,
    };

    use super::*;

    fn registration(client_id: &str, random: &str, granted: bool) -> ClusterRegistration {
        let mut registration = ClusterRegistration::new(
            "request-1",
            ClusterRegistrationSpec {
                client_id: Some(client_id.to_owned()),
                client_random: Some(random.to_owned()),
                cluster_labels: BTreeMap::from([("env".to_owned(), "prod".to_owned())]),
            },
        );
        registration.metadata.namespace = Some("fleet-default".to_owned());
        registration.status = Some(ClusterRegistrationStatus {
            granted,
            ..Default::default()
        });
        registration
    }

    fn imported(name: &str, client_id: &str) -> Arc<Cluster> {
        let mut cluster = Cluster::new(
            name,
            ClusterSpec {
                client_id: Some(client_id.to_owned()),
                ..ClusterSpec::default()
            },
        );
        cluster.metadata.namespace = Some("fleet-default".to_owned());
        Arc::new(cluster)
    }

    #[test]
    fn a_registration_becomes_its_cluster() {
        let granted = plan_registration(&registration("id", "r", true), &[]);
        assert!(matches!(granted, RegistrationPlan::Granted));
        let incomplete = plan_registration(&registration("", "r", false), &[]);
        assert!(matches!(incomplete, RegistrationPlan::Incomplete));
        let incomplete = plan_registration(&registration("id", "", false), &[]);
        assert!(matches!(incomplete, RegistrationPlan::Incomplete));

        // (Clusters there are, the name the agent registers as)
        let cases = [
            (vec![], cluster_name("id")),
            (vec![imported("mine", "id")], "mine".to_owned()),
            (vec![imported("other", "another")], cluster_name("id")),
        ];
        for (clusters, name) in cases {
            let RegistrationPlan::Grant {
                cluster,
                client_id,
                client_random,
            } = plan_registration(&registration("id", "r", false), &clusters)
            else {
                panic!("expected a grant");
            };
            assert_eq!(cluster.name_any(), name);
            assert_eq!(cluster.namespace().as_deref(), Some("fleet-default"));
            assert_eq!(
                cluster.labels().get("env").map(String::as_str),
                Some("prod")
            );
            assert_eq!((client_id.as_str(), client_random.as_str()), ("id", "r"));
        }
    }

    #[test]
    fn a_token_expires_its_ttl_after_its_creation() {
        let token = |ttl: Option<&str>| {
            let mut token = ClusterRegistrationToken::new(
                "t",
                ClusterRegistrationTokenSpec {
                    ttl: ttl.map(str::to_owned),
                },
            );
            token.metadata.creation_timestamp =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    "2026-01-01T00:00:00Z".parse().expect("time"),
                ));
            token
        };
        let at = |text: &str| Some(text.parse::<jiff::Timestamp>().expect("time"));
        assert_eq!(token_expiry(&token(Some("1h"))), at("2026-01-01T01:00:00Z"));
        assert_eq!(
            token_expiry(&token(Some("90s"))),
            at("2026-01-01T00:01:30Z")
        );
        assert_eq!(token_expiry(&token(Some("0"))), None);
        assert_eq!(token_expiry(&token(None)), None);
        assert_eq!(token_expiry(&token(Some("soon"))), None);
    }
}
