//! Readiness of a deployed object, judged per kind the way Fleet's agent does (wrangler's
//! summary, kstatus-like): workloads are ready when their controller has observed the current
//! generation and the wanted replicas are updated and available; Pods when Ready (or
//! Succeeded); Jobs when Complete; PersistentVolumeClaims when Bound; LoadBalancer Services
//! when they have an ingress; any other object when no condition says otherwise (`Ready`
//! False, `Stalled` True) and its `status.observedGeneration` is current. Objects without a
//! status (ConfigMaps, RBAC, ...) are ready. Conditions matched by `ignore.conditions` are left
//! out. Pure.

use std::collections::BTreeMap;

use fleet_api::ResourceSummary;
use serde_json::Value;

/// Why `object` is not ready, or `None` when it is. `ignore` holds the bundle's
/// `ignore.conditions`: a condition whose fields match all of one entry's is not looked at.
pub fn not_ready(object: &Value, ignore: &[BTreeMap<String, String>]) -> Option<ResourceSummary> {
    let kind = object["kind"].as_str().unwrap_or_default();
    let group = object["apiVersion"]
        .as_str()
        .and_then(|v| v.rsplit_once('/'))
        .map_or("", |(group, _)| group);
    let status = &object["status"];
    let conditions = conditions(status, ignore);
    if let Some(summary) = failed_condition(&conditions) {
        return Some(summary);
    }
    if let Some(summary) = generation_pending(object) {
        return Some(summary);
    }
    match (group, kind) {
        ("apps", "Deployment") => replicas(object, "updatedReplicas", "availableReplicas"),
        ("apps", "StatefulSet") => replicas(object, "updatedReplicas", "readyReplicas"),
        ("apps", "ReplicaSet") => replicas(object, "fullyLabeledReplicas", "availableReplicas"),
        ("apps", "DaemonSet") => daemon_set(status),
        ("", "Pod") => pod(status, &conditions),
        ("batch", "Job") => job(&conditions),
        ("", "PersistentVolumeClaim") => {
            let phase = status["phase"].as_str().unwrap_or("Pending");
            (phase != "Bound").then(|| pending(format!("PersistentVolumeClaim is {phase}")))
        }
        ("", "Service") => load_balancer(object),
        _ => not_ready_condition(&conditions),
    }
}

/// The object's conditions as `(type, status, reason, message)`, ignored ones left out.
fn conditions<'a>(status: &'a Value, ignore: &[BTreeMap<String, String>]) -> Vec<Condition<'a>> {
    let Some(list) = status["conditions"].as_array() else {
        return Vec::new();
    };
    list.iter()
        .filter(|c| {
            !ignore.iter().any(|rule| {
                !rule.is_empty() && rule.iter().all(|(k, v)| c[k].as_str() == Some(v.as_str()))
            })
        })
        .map(|c| Condition {
            type_: c["type"].as_str().unwrap_or_default(),
            status: c["status"].as_str().unwrap_or_default(),
            reason: c["reason"].as_str().unwrap_or_default(),
            message: c["message"].as_str().unwrap_or_default(),
        })
        .collect()
}

struct Condition<'a> {
    type_: &'a str,
    status: &'a str,
    reason: &'a str,
    message: &'a str,
}

impl Condition<'_> {
    fn text(&self) -> String {
        if self.message.is_empty() {
            format!("{} {}: {}", self.type_, self.status, self.reason)
        } else {
            self.message.to_owned()
        }
    }
}

/// Conditions that say the object failed, whatever its kind.
fn failed_condition(conditions: &[Condition<'_>]) -> Option<ResourceSummary> {
    for c in conditions {
        let failed = match (c.type_, c.status) {
            ("Failed" | "Stalled", "True") => true,
            ("Progressing", _) => c.reason == "ProgressDeadlineExceeded",
            _ => false,
        };
        if failed {
            return Some(error(c.text()));
        }
    }
    None
}

/// Kinds without rules of their own: a `Ready` condition that is False.
fn not_ready_condition(conditions: &[Condition<'_>]) -> Option<ResourceSummary> {
    conditions
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "False")
        .map(|c| transitioning(c.text()))
}

/// The object's controller has not seen its latest spec yet.
fn generation_pending(object: &Value) -> Option<ResourceSummary> {
    let generation = object["metadata"]["generation"].as_i64()?;
    let observed = object["status"]["observedGeneration"].as_i64();
    match observed {
        Some(observed) if observed >= generation => None,
        // Workloads always report it; other kinds only when they have a controller that does.
        None if !is_workload(object) => None,
        _ => Some(transitioning(format!(
            "waiting for generation {generation} to be observed"
        ))),
    }
}

fn is_workload(object: &Value) -> bool {
    object["apiVersion"]
        .as_str()
        .is_some_and(|v| v.starts_with("apps/"))
}

/// Deployments, StatefulSets and ReplicaSets: all wanted replicas updated and available.
fn replicas(object: &Value, updated_field: &str, available_field: &str) -> Option<ResourceSummary> {
    let wanted = object["spec"]["replicas"].as_i64().unwrap_or(1);
    let status = &object["status"];
    let count = |field: &str| status[field].as_i64().unwrap_or(0);
    let (updated, available) = (count(updated_field), count(available_field));
    if updated < wanted {
        return Some(transitioning(format!(
            "{updated} of {wanted} replicas updated"
        )));
    }
    if available < wanted {
        return Some(transitioning(format!(
            "{available} of {wanted} replicas available"
        )));
    }
    None
}

fn daemon_set(status: &Value) -> Option<ResourceSummary> {
    let count = |field: &str| status[field].as_i64().unwrap_or(0);
    let wanted = count("desiredNumberScheduled");
    let (updated, available) = (count("updatedNumberScheduled"), count("numberAvailable"));
    if updated < wanted {
        return Some(transitioning(format!("{updated} of {wanted} pods updated")));
    }
    (available < wanted).then(|| transitioning(format!("{available} of {wanted} pods available")))
}

fn pod(status: &Value, conditions: &[Condition<'_>]) -> Option<ResourceSummary> {
    match status["phase"].as_str().unwrap_or("Pending") {
        "Succeeded" => None,
        "Failed" => Some(error(
            status["message"]
                .as_str()
                .unwrap_or("Pod failed")
                .to_owned(),
        )),
        "Running"
            if conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True") =>
        {
            None
        }
        phase => Some(pending(format!("Pod is {phase}"))),
    }
}

fn job(conditions: &[Condition<'_>]) -> Option<ResourceSummary> {
    let complete = conditions
        .iter()
        .any(|c| c.type_ == "Complete" && c.status == "True");
    (!complete).then(|| transitioning("Job has not completed".to_owned()))
}

fn load_balancer(object: &Value) -> Option<ResourceSummary> {
    if object["spec"]["type"].as_str() != Some("LoadBalancer") {
        return None;
    }
    let ingress = object["status"]["loadBalancer"]["ingress"]
        .as_array()
        .is_some_and(|i| !i.is_empty());
    (!ingress).then(|| pending("LoadBalancer has no ingress yet".to_owned()))
}

fn transitioning(message: String) -> ResourceSummary {
    ResourceSummary {
        state: Some("in-progress".to_owned()),
        transitioning: true,
        message: vec![message],
        ..ResourceSummary::default()
    }
}

fn pending(message: String) -> ResourceSummary {
    ResourceSummary {
        state: Some("pending".to_owned()),
        transitioning: true,
        message: vec![message],
        ..ResourceSummary::default()
    }
}

fn error(message: String) -> ResourceSummary {
    ResourceSummary {
        state: Some("error".to_owned()),
        error: true,
        message: vec![message],
        ..ResourceSummary::default()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ready(object: Value) -> Result<(), ResourceSummary> {
        not_ready(&object, &[]).map_or(Ok(()), Err)
    }

    fn deployment(status: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "web", "generation": 2},
               "spec": {"replicas": 3}, "status": status})
    }

    #[test]
    fn objects_without_status_are_ready() {
        assert_eq!(
            ready(json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {}})),
            Ok(())
        );
        assert_eq!(
            ready(json!({"apiVersion": "v1", "kind": "Service", "spec": {"type": "ClusterIP"}})),
            Ok(())
        );
    }

    #[test]
    fn a_deployment_is_ready_when_its_generation_is_observed_and_replicas_available() {
        let summary = ready(deployment(json!({}))).expect_err("no status yet");
        assert_eq!(summary.message, ["waiting for generation 2 to be observed"]);
        assert!(summary.transitioning && !summary.error);
        let summary = ready(deployment(
            json!({"observedGeneration": 2, "updatedReplicas": 3, "availableReplicas": 1}),
        ))
        .expect_err("partly available");
        assert_eq!(summary.message, ["1 of 3 replicas available"]);
        assert_eq!(
            ready(deployment(
                json!({"observedGeneration": 2, "updatedReplicas": 3, "availableReplicas": 3})
            )),
            Ok(())
        );
    }

    #[test]
    fn a_progress_deadline_is_an_error() {
        let summary = ready(deployment(json!({"observedGeneration": 2, "conditions": [
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
             "message": "ReplicaSet \"web-1\" has timed out progressing."}]})))
        .expect_err("stuck");
        assert!(summary.error);
        assert_eq!(summary.state.as_deref(), Some("error"));
        assert_eq!(
            summary.message,
            ["ReplicaSet \"web-1\" has timed out progressing."]
        );
    }

    #[test]
    fn pods_jobs_claims_and_load_balancers() {
        let pod = |phase: &str, ready: &str| {
            json!({"apiVersion": "v1", "kind": "Pod", "status": {"phase": phase,
                   "conditions": [{"type": "Ready", "status": ready}]}})
        };
        assert_eq!(ready(pod("Running", "True")), Ok(()));
        assert_eq!(ready(pod("Succeeded", "False")), Ok(()));
        assert!(ready(pod("Pending", "False")).is_err());
        assert!(ready(pod("Failed", "False")).expect_err("failed").error);
        let job = |conditions: Value| json!({"apiVersion": "batch/v1", "kind": "Job", "status": {"conditions": conditions}});
        assert!(ready(job(json!([]))).is_err());
        assert_eq!(
            ready(job(json!([{"type": "Complete", "status": "True"}]))),
            Ok(())
        );
        assert!(
            ready(job(json!([{"type": "Failed", "status": "True"}])))
                .expect_err("failed")
                .error
        );
        let claim = |phase: &str| json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "status": {"phase": phase}});
        assert_eq!(ready(claim("Bound")), Ok(()));
        assert_eq!(
            ready(claim("Pending"))
                .expect_err("pending")
                .state
                .as_deref(),
            Some("pending")
        );
        let lb = json!({"apiVersion": "v1", "kind": "Service", "spec": {"type": "LoadBalancer"}});
        assert!(ready(lb).is_err());
    }

    #[test]
    fn custom_resources_follow_their_conditions_and_ignored_ones_do_not_count() {
        let object = json!({"apiVersion": "example.com/v1", "kind": "Database",
            "metadata": {"generation": 1},
            "status": {"conditions": [{"type": "Ready", "status": "False", "reason": "Provisioning"}]}});
        let summary = ready(object.clone()).expect_err("Ready False");
        assert_eq!(summary.message, ["Ready False: Provisioning"]);
        let ignore = [BTreeMap::from([("type".to_owned(), "Ready".to_owned())])];
        assert_eq!(not_ready(&object, &ignore), None);
    }
}
