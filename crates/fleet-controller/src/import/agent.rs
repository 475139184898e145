//! The agent a managed cluster gets: its objects downstream, as the chart's agent-only mode
//! renders them.

use fleet_api::Cluster;
use fleet_api::registration_protocol::TokenValues;
use serde_json::{Value, json};

use crate::settings::AgentSettings;

/// Where the agent goes downstream unless `spec.agentNamespace` says otherwise.
pub const DEFAULT_AGENT_NAMESPACE: &str = "cattle-fleet-system";

pub(super) fn agent_namespace(cluster: &Cluster) -> String {
    cluster
        .spec
        .agent_namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| DEFAULT_AGENT_NAMESPACE.to_owned())
}

pub(super) fn replicas(cluster: &Cluster, agent: &AgentSettings) -> i32 {
    cluster.spec.agent_replicas.unwrap_or(agent.replicas).max(1)
}

/// The agent's objects in the downstream cluster, as the chart's agent-only mode renders
/// them (same names, so a chart-installed agent and a managed one look alike).
pub fn agent_objects(
    cluster: &Cluster,
    agent: &AgentSettings,
    token_values: &TokenValues,
) -> Vec<Value> {
    let namespace = agent_namespace(cluster);
    let replicas = replicas(cluster, agent);
    let labels =
        json!({"app.kubernetes.io/name": "fleet-agent", "app.kubernetes.io/part-of": "fleet-rs"});
    let selector = json!({"app.kubernetes.io/name": "fleet-agent"});
    let scheduling = cluster
        .spec
        .agent_scheduling_customization
        .clone()
        .unwrap_or_default();
    let pod = agent_pod(cluster, agent, &namespace);
    let mut objects = vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}),
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
               "metadata": {"name": "fleet-agent", "namespace": namespace, "labels": labels}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": format!("fleet-rs-agent-{namespace}"), "labels": labels},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
               "subjects": [{"kind": "ServiceAccount", "name": "fleet-agent", "namespace": namespace}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
               "metadata": {"name": "fleet-agent-leases", "namespace": namespace, "labels": labels},
               "rules": [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                          "verbs": ["get", "list", "watch", "create", "update", "patch"]}]}),
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": "fleet-agent-bootstrap", "namespace": namespace, "labels": labels},
               "type": "Opaque",
               "stringData": {"values.json": json!(token_values).to_string()}}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "fleet-agent", "namespace": namespace, "labels": labels},
               "spec": {"replicas": replicas, "selector": {"matchLabels": selector},
                        "template": {"metadata": {"labels": labels}, "spec": pod}}}),
    ];
    if let Some(class) = scheduling.priority_class {
        objects.push(
            json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
            "metadata": {"name": "fleet-agent-priority-class", "labels": labels},
            "value": class.value, "preemptionPolicy": class.preemption_policy}),
        );
    }
    if replicas > 1 || scheduling.pod_disruption_budget.is_some() {
        let budget = scheduling.pod_disruption_budget.unwrap_or_default();
        let mut pdb = json!({"selector": {"matchLabels": selector}});
        match (budget.min_available, budget.max_unavailable) {
            (Some(min), _) => pdb["minAvailable"] = int_or_string(&min),
            (None, Some(max)) => pdb["maxUnavailable"] = int_or_string(&max),
            (None, None) => pdb["maxUnavailable"] = json!(1),
        }
        objects.push(
            json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "fleet-agent", "namespace": namespace, "labels": labels},
            "spec": pdb}),
        );
    }
    objects
}

/// The agent's pod: the image and pull policy of `agent`, the Cluster's agent settings
/// (environment, tolerations, affinity, resources, priority class), and the bootstrap values.
fn agent_pod(cluster: &Cluster, agent: &AgentSettings, namespace: &str) -> Value {
    let spec = &cluster.spec;
    let mut env = vec![
        json!({"name": "CLIENT_ID", "value": spec.client_id}),
        json!({"name": "FLEET_ELECTION_IDENTITY", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}),
    ];
    env.extend(spec.agent_env_vars.iter().map(|e| json!(e)));
    let mut pod = json!({
        "serviceAccountName": "fleet-agent",
        "volumes": [
            {"name": "tmp", "emptyDir": {}},
            {"name": "bootstrap", "secret": {"secretName": "fleet-agent-bootstrap"}},
        ],
        "tolerations": spec.agent_tolerations,
        "containers": [{
            "name": "fleet-agent",
            "image": agent.image,
            "imagePullPolicy": agent.pull_policy,
            "command": ["/usr/local/bin/fleet-agent"],
            "args": [
                format!("--namespace={namespace}"),
                "--registration-values=/etc/fleet/bootstrap/values.json",
                "--helm=/usr/local/bin/helm",
                "--kustomize=/usr/local/bin/kustomize",
                "--metrics-bind-address=0.0.0.0:8080",
                "--health-bind-address=0.0.0.0:8081",
            ],
            "env": env,
            "ports": [{"name": "metrics", "containerPort": 8080}, {"name": "health", "containerPort": 8081}],
            "livenessProbe": {"httpGet": {"path": "/healthz", "port": "health"}, "periodSeconds": 10},
            "readinessProbe": {"httpGet": {"path": "/readyz", "port": "health"}, "periodSeconds": 5},
            "resources": spec.agent_resources,
            "volumeMounts": [
                {"name": "tmp", "mountPath": "/tmp"},
                {"name": "bootstrap", "mountPath": "/etc/fleet/bootstrap", "readOnly": true},
            ],
            "securityContext": {
                "runAsNonRoot": true, "runAsUser": 65532, "allowPrivilegeEscalation": false,
                "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]},
            },
        }],
    });
    if let Some(affinity) = &spec.agent_affinity {
        pod["affinity"] = json!(affinity);
    }
    let scheduling = spec.agent_scheduling_customization.as_ref();
    if scheduling.is_some_and(|s| s.priority_class.is_some()) {
        pod["priorityClassName"] = json!("fleet-agent-priority-class");
    }
    pod
}

/// A PodDisruptionBudget count: an integer, or a percentage string.
fn int_or_string(value: &str) -> Value {
    value
        .parse::<i64>()
        .map_or_else(|_| json!(value), |n| json!(n))
}
