//! Manager-initiated import and agent management, as Fleet's agentmanagement does them: a
//! Cluster with `spec.kubeConfigSecret` gets its agent installed by the controller, which
//! connects to the downstream cluster with that kubeconfig (the Secret's key `value`) and
//! applies the agent's objects (namespace, ServiceAccount, RBAC, bootstrap Secret with the
//! values of a ClusterRegistrationToken `import-token-<cluster>`, Deployment, and a
//! PodDisruptionBudget with more than one replica). The agent then registers like any other
//! (its clientID is the Cluster's `spec.clientID`, so registration attaches it to this Cluster)
//! and the Cluster becomes Ready.
//!
//! Afterwards the controller keeps the agent current: a change of the Cluster's agent fields
//! (`agentTolerations`, `agentAffinity`, `agentResources`, `agentEnvVars`,
//! `agentSchedulingCustomization`, `agentReplicas` here), of `redeployAgentGeneration` or of the
//! agent image re-applies the objects (server-side apply: the Deployment rolls, the
//! registration stays in the agent's Secret). `status.agentDeployedGeneration` and the
//! `agent*Hash` fields record what is deployed, as Fleet reports them; the `Imported`
//! condition says why an import failed (bad or unreachable kubeconfig), retried with backoff.
//!
//! observe ([`Observed`]) → decide ([`plan`], pure) → act ([`reconcile`]).

use std::sync::Arc;
use std::time::Duration;

use fleet_api::registration_protocol::TokenValues;
use fleet_api::{Cluster, ClusterRegistrationToken, ClusterRegistrationTokenSpec, Condition};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::discovery::ApiResource;
use kube::runtime::controller::Action;
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::context::{Context, retry};
use crate::error::Error;
pub use crate::settings::AgentSettings;

mod agent;

use crate::wiring::Term;
pub use agent::{DEFAULT_AGENT_NAMESPACE, agent_objects};
use agent::{agent_namespace, replicas};
use fleet_runtime::{WriteError, Writer};

/// The field manager of what this module writes (the Cluster's import status fields and
/// the `Imported` condition; the status roll-up owns the rest).
pub const MANAGER: &str = "fleet-controller-import";
/// How long the import token lives (Fleet's 12 h).
const TOKEN_TTL: &str = "12h";
/// The key of the kubeconfig in `spec.kubeConfigSecret`, as Fleet reads it.
const KUBECONFIG_KEY: &str = "value";

/// What one reconcile of an imported Cluster must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Not a manager-initiated import.
    NotImported,
    /// The Cluster needs a clientID first (Fleet generates one).
    AssignClientId,
    /// The import token's values are not there yet.
    WaitForToken,
    /// The agent is as it should be.
    UpToDate,
    /// Apply the agent's objects downstream, recording `hash`.
    Install { hash: String },
}

/// What [`plan`] looks at.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// The token Secret's `values`, once the controller wrote them.
    pub token_values: Option<TokenValues>,
    /// Whether the last install failed (then retry, even if the hash matches).
    pub failed: bool,
}

/// The decision for `cluster`: pure, from what was observed.
pub fn plan(cluster: &Cluster, observed: &Observed, agent: &AgentSettings) -> Plan {
    if cluster.spec.kube_config_secret.is_none() {
        return Plan::NotImported;
    }
    if cluster.spec.client_id.as_deref().is_none_or(str::is_empty) {
        return Plan::AssignClientId;
    }
    if observed.token_values.is_none() {
        return Plan::WaitForToken;
    }
    let hash = agent_hash(cluster, agent);
    let status = cluster.status.clone().unwrap_or_default();
    let deployed = status.agent_deployed_generation == Some(cluster.spec.redeploy_agent_generation)
        && status.agent_manifest_hash.as_deref() == Some(hash.as_str());
    if deployed && !observed.failed {
        Plan::UpToDate
    } else {
        Plan::Install { hash }
    }
}

/// A hash of everything the agent's objects are made from (but the token, which only
/// matters for the first registration).
pub fn agent_hash(cluster: &Cluster, agent: &AgentSettings) -> String {
    let spec = &cluster.spec;
    let input = json!({
        "image": agent.image,
        "pullPolicy": agent.pull_policy,
        "replicas": replicas(cluster, agent),
        "namespace": agent_namespace(cluster),
        "tolerations": spec.agent_tolerations,
        "affinity": spec.agent_affinity,
        "resources": spec.agent_resources,
        "env": spec.agent_env_vars,
        "scheduling": spec.agent_scheduling_customization,
    });
    let digest = Sha256::digest(input.to_string().as_bytes());
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

fn short_hash(value: &impl serde::Serialize) -> String {
    let text = serde_json::to_string(value).unwrap_or_default();
    Sha256::digest(text.as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The name of a Cluster's import token (Fleet's).
pub fn token_name(cluster: &str) -> String {
    fleet_api::naming::safe_concat_name(&["import-token", cluster])
}

/// Reconciles one Cluster: observe, [`plan`], act.
pub async fn reconcile(cluster: Arc<Cluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let Some(agent) = ctx.settings.agent.clone() else {
        return Ok(Action::await_change());
    };
    if cluster.spec.kube_config_secret.is_none() {
        return Ok(Action::await_change());
    }
    let namespace = cluster.namespace().unwrap_or_default();
    let name = cluster.name_any();
    let observed = observe(&cluster, &ctx).await?;
    match plan(&cluster, &observed, &agent) {
        Plan::NotImported | Plan::UpToDate => Ok(Action::await_change()),
        Plan::AssignClientId => {
            let client_id = random_id()?;
            let api = Api::<Cluster>::namespaced(ctx.client.clone(), &namespace);
            let patch = Patch::Merge(json!({"spec": {"clientID": client_id}}));
            ctx.writer()
                .patch(&api, &name, &PatchParams::default(), &patch)
                .await?;
            ctx.metrics.writes.inc();
            Ok(Action::await_change())
        }
        Plan::WaitForToken => {
            ensure_token(&ctx, &namespace, &name).await?;
            Ok(Action::requeue(Duration::from_secs(1)))
        }
        Plan::Install { hash } => {
            let Some(values) = observed.token_values else {
                return Ok(Action::requeue(Duration::from_secs(1)));
            };
            let result = install(&cluster, &ctx, &agent, &values).await;
            let (condition, next) = match &result {
                Ok(()) => {
                    tracing::info!(cluster = %name, %namespace, %hash, "agent installed downstream");
                    (
                        imported(true, "the agent is installed downstream"),
                        Action::await_change(),
                    )
                }
                Err(message) => {
                    tracing::warn!(cluster = %name, %namespace, %message, "agent import failed");
                    (
                        imported(false, message),
                        Action::requeue(Duration::from_secs(15)),
                    )
                }
            };
            let mut status = json!({"conditions": [condition]});
            if result.is_ok() {
                let spec = &cluster.spec;
                status["agentDeployedGeneration"] = json!(spec.redeploy_agent_generation);
                status["agentManifestHash"] = json!(hash);
                status["agentEnvVarsHash"] = json!(short_hash(&spec.agent_env_vars));
                status["agentTolerationsHash"] = json!(short_hash(&spec.agent_tolerations));
                status["agentAffinityHash"] = json!(short_hash(&spec.agent_affinity));
                status["agentResourcesHash"] = json!(short_hash(&spec.agent_resources));
                status["agentSchedulingCustomizationHash"] =
                    json!(short_hash(&spec.agent_scheduling_customization));
            }
            let body = json!({"apiVersion": "fleet.cattle.io/v1alpha1", "kind": "Cluster", "status": status});
            let api = Api::<Cluster>::namespaced(ctx.client.clone(), &namespace);
            ctx.writer()
                .patch_status(
                    &api,
                    &name,
                    &PatchParams::apply(MANAGER).force(),
                    &Patch::Apply(body),
                )
                .await?;
            ctx.metrics.writes.inc();
            Ok(next)
        }
    }
}

fn imported(ok: bool, message: &str) -> Condition {
    Condition {
        type_: "Imported".to_owned(),
        status: if ok { "True" } else { "False" }.to_owned(),
        last_update_time: Some(jiff::Timestamp::now().to_string()),
        last_transition_time: None,
        reason: Some(if ok { "Installed" } else { "ImportFailed" }.to_owned()),
        message: Some(message.to_owned()),
    }
}

/// A random identifier (128 bits of the kernel's randomness) for a Cluster without a
/// clientID.
fn random_id() -> Result<String, Error> {
    use std::io::Read as _;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| Error::Finalizer(format!("reading /dev/urandom: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Reads the import token's values, and whether the last install failed.
async fn observe(cluster: &Cluster, ctx: &Context) -> Result<Observed, Error> {
    let namespace = cluster.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let token = token_name(&cluster.name_any());
    let token_values = secrets
        .get_opt(&token)
        .await
        .map_err(|source| Error::Api {
            action: "reading",
            what: format!("Secret {namespace}/{token}"),
            source,
        })?
        .as_ref()
        .and_then(|secret| TokenValues::from_data(secret.data.as_ref()?).ok());
    let failed = cluster.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Imported" && c.status == "False")
    });
    Ok(Observed {
        token_values,
        failed,
    })
}

/// Creates the Cluster's import token (its Secret of values follows from the registration
/// controller).
async fn ensure_token(ctx: &Context, namespace: &str, cluster: &str) -> Result<(), Error> {
    let name = token_name(cluster);
    let mut token = ClusterRegistrationToken::new(
        &name,
        ClusterRegistrationTokenSpec {
            ttl: Some(TOKEN_TTL.to_owned()),
        },
    );
    token.metadata.namespace = Some(namespace.to_owned());
    let api = Api::<ClusterRegistrationToken>::namespaced(ctx.client.clone(), namespace);
    match ctx.writer().create(&api, &token).await {
        Ok(_) => {
            ctx.metrics.writes.inc();
            Ok(())
        }
        Err(e) if e.is_conflict() => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Connects to the downstream cluster with the Cluster's kubeconfig Secret and applies the
/// agent's objects; the error is the message for the `Imported` condition.
async fn install(
    cluster: &Cluster,
    ctx: &Context,
    agent: &AgentSettings,
    token_values: &TokenValues,
) -> Result<(), String> {
    let namespace = cluster.namespace().unwrap_or_default();
    let secret_namespace = cluster
        .spec
        .kube_config_secret_namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| namespace.clone());
    let secret_name = cluster.spec.kube_config_secret.clone().unwrap_or_default();
    let secret = Api::<Secret>::namespaced(ctx.client.clone(), &secret_namespace)
        .get_opt(&secret_name)
        .await
        .map_err(|e| format!("reading Secret {secret_namespace}/{secret_name}: {e}"))?
        .ok_or_else(|| format!("kubeConfigSecret {secret_namespace}/{secret_name} not found"))?;
    let kubeconfig = secret
        .data
        .as_ref()
        .and_then(|d| d.get(KUBECONFIG_KEY))
        .ok_or_else(|| {
            format!("Secret {secret_namespace}/{secret_name} has no key `{KUBECONFIG_KEY}`")
        })?;
    let downstream = downstream_client(&kubeconfig.0)
        .await
        .map_err(|e| format!("kubeconfig in Secret {secret_namespace}/{secret_name}: {e}"))?;
    let writer = ctx.writer();
    for object in agent_objects(cluster, agent, token_values) {
        apply(&writer, &downstream, &object)
            .await
            .map_err(|e| format!("applying the agent downstream: {e}"))?;
    }
    Ok(())
}

async fn downstream_client(kubeconfig: &[u8]) -> Result<Client, String> {
    let text = String::from_utf8_lossy(kubeconfig);
    let config = Kubeconfig::from_yaml(&text).map_err(|e| e.to_string())?;
    let config = kube::Config::from_custom_kubeconfig(config, &KubeConfigOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    let mut config = config;
    // An unreachable cluster must fail the import, not hang it.
    config.connect_timeout = Some(Duration::from_secs(10));
    config.read_timeout = Some(Duration::from_secs(30));
    Client::try_from(config).map_err(|e| e.to_string())
}

/// Server-side applies one object downstream under this module's field manager.
async fn apply(writer: &Writer, client: &Client, object: &Value) -> Result<(), WriteError> {
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    let kind = object["kind"].as_str().unwrap_or_default();
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let resource = ApiResource {
        group: group.to_owned(),
        version: version.to_owned(),
        api_version: api_version.to_owned(),
        kind: kind.to_owned(),
        plural: plural(kind),
    };
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    let api: Api<DynamicObject> = match object["metadata"]["namespace"].as_str() {
        Some(namespace) => Api::namespaced_with(client.clone(), namespace, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    writer
        .patch_dynamic(
            &api,
            &resource,
            name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(object),
        )
        .await
        .map(|_| ())
}

fn plural(kind: &str) -> String {
    match kind {
        "PodDisruptionBudget" => "poddisruptionbudgets".to_owned(),
        "PriorityClass" => "priorityclasses".to_owned(),
        other => format!("{}s", other.to_lowercase()),
    }
}

/// Manager-initiated import for a term (the unsharded controller's): every Cluster.
pub async fn run(term: &Term) {
    let clusters = term.controller(&term.caches.clusters).await;
    let workers = term.workers(term.ctx.settings.workers.rollups);
    term.run(clusters, workers, "cluster-import", reconcile, retry)
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleet_api::registration_protocol::REGISTRATION_NAMESPACE;

    fn settings() -> AgentSettings {
        AgentSettings {
            image: "ghcr.io/fleet-rs/fleet-rs:0.1.0".into(),
            pull_policy: "IfNotPresent".into(),
            replicas: 2,
        }
    }

    fn cluster(yaml: &str) -> Cluster {
        serde_saphyr::from_str(&format!(
            "apiVersion: fleet.cattle.io/v1alpha1\nkind: Cluster\nmetadata:\n  name: c\n  namespace: fleet-default\n{yaml}"
        ))
        .expect("cluster")
    }

    fn test_token() -> TokenValues {
        TokenValues {
            api_server_url: Some("https://up:6443".to_owned()),
            api_server_ca: None,
            cluster_namespace: "fleet-default".to_owned(),
            system_registration_namespace: REGISTRATION_NAMESPACE.to_owned(),
            token: "t".to_owned(),
        }
    }

    #[test]
    fn the_plan_follows_the_import_through() {
        let values = Observed {
            token_values: Some(test_token()),
            failed: false,
        };
        let none = Observed::default();
        let agent = settings();
        assert_eq!(
            plan(&cluster("spec: {}\n"), &values, &agent),
            Plan::NotImported
        );
        let no_id = cluster("spec:\n  kubeConfigSecret: kc\n");
        assert_eq!(plan(&no_id, &values, &agent), Plan::AssignClientId);
        let fresh = cluster("spec:\n  kubeConfigSecret: kc\n  clientID: abc\n");
        assert_eq!(plan(&fresh, &none, &agent), Plan::WaitForToken);
        let hash = agent_hash(&fresh, &agent);
        assert_eq!(
            plan(&fresh, &values, &agent),
            Plan::Install { hash: hash.clone() }
        );

        let mut installed = fresh.clone();
        installed.status = Some(fleet_api::ClusterStatus {
            agent_deployed_generation: Some(0),
            agent_manifest_hash: Some(hash.clone()),
            ..Default::default()
        });
        assert_eq!(plan(&installed, &values, &agent), Plan::UpToDate);
        // A failed install is retried even when nothing changed.
        let failed = Observed {
            failed: true,
            ..values.clone()
        };
        assert!(matches!(
            plan(&installed, &failed, &agent),
            Plan::Install { .. }
        ));
        // An agent field, the image or redeployAgentGeneration change re-applies.
        let mut tolerations = installed.clone();
        tolerations.spec.agent_tolerations = vec![Default::default()];
        assert!(matches!(
            plan(&tolerations, &values, &agent),
            Plan::Install { .. }
        ));
        let newer = AgentSettings {
            image: "x:2".into(),
            ..settings()
        };
        assert!(matches!(
            plan(&installed, &values, &newer),
            Plan::Install { .. }
        ));
        let mut redeploy = installed.clone();
        redeploy.spec.redeploy_agent_generation = 1;
        assert!(matches!(
            plan(&redeploy, &values, &agent),
            Plan::Install { .. }
        ));
    }

    #[test]
    fn the_agent_objects_carry_the_clusters_settings() {
        let c = cluster(
            "spec:\n  kubeConfigSecret: kc\n  clientID: abc\n  agentNamespace: fleet-agents\n  agentTolerations:\n  - key: dedicated\n    operator: Exists\n  agentSchedulingCustomization:\n    podDisruptionBudget:\n      minAvailable: \"1\"\n",
        );
        let objects = agent_objects(&c, &settings(), &test_token());
        let kinds: Vec<&str> = objects.iter().filter_map(|o| o["kind"].as_str()).collect();
        assert_eq!(
            kinds,
            [
                "Namespace",
                "ServiceAccount",
                "ClusterRoleBinding",
                "Role",
                "Secret",
                "Deployment",
                "PodDisruptionBudget"
            ]
        );
        let deployment = &objects[5];
        assert_eq!(deployment["metadata"]["namespace"], "fleet-agents");
        assert_eq!(deployment["spec"]["replicas"], 2);
        let pod = &deployment["spec"]["template"]["spec"];
        assert_eq!(pod["tolerations"][0]["key"], "dedicated");
        assert_eq!(pod["containers"][0]["env"][0]["value"], "abc");
        assert_eq!(objects[6]["spec"]["minAvailable"], 1);
        let values = objects[4]["stringData"]["values.json"]
            .as_str()
            .unwrap_or_default();
        let values: TokenValues = serde_json::from_str(values).expect("token values");
        assert_eq!(values, test_token());
    }
}
