//! The generated CRDs on a real API server: Fleet-documentation-shaped objects apply
//! (server-side) and read back without a field pruned; invalid objects are refused with a
//! message naming the field; `kubectl get` columns and the `fleet` category are Fleet's.

mod common;

use std::collections::BTreeSet;

use common::{OBJECT_FIXTURES, fixture_value, omit_empty};
use fleet_testkit::{ControlPlane, apply_crds};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

async fn plane_with_crds() -> ControlPlane {
    let plane = ControlPlane::builder()
        .controller_manager(false)
        .start()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    apply_crds(&plane.client(), &fleet_api::crds())
        .await
        .unwrap_or_else(|e| panic!("CRDs: {e}"));
    plane
}

fn api_for(client: &Client, kind: &str, namespace: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk(fleet_api::GROUP, fleet_api::VERSION, kind);
    let resource = ApiResource::from_gvk_with_plural(&gvk, &format!("{}s", kind.to_lowercase()));
    Api::namespaced_with(client.clone(), namespace, &resource)
}

async fn ensure_namespace(client: &Client, name: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    if namespaces
        .get_opt(name)
        .await
        .expect("get namespace")
        .is_none()
    {
        let ns = serde_json::from_value(json!({"metadata": {"name": name}})).expect("namespace");
        namespaces
            .create(&PostParams::default(), &ns)
            .await
            .expect("create namespace");
    }
}

/// The object's own fields (everything but metadata and apiVersion/kind).
fn content(value: &Value) -> Value {
    let mut object = value.as_object().cloned().unwrap_or_default();
    for key in ["metadata", "apiVersion", "kind", "status"] {
        object.remove(key);
    }
    omit_empty(&Value::Object(object))
}

#[tokio::test]
async fn documentation_examples_apply_without_losing_fields() {
    let plane = plane_with_crds().await;
    let client = plane.client();
    for (file, kind) in OBJECT_FIXTURES {
        let fixture = fixture_value(file);
        let namespace = fixture["metadata"]["namespace"]
            .as_str()
            .expect("namespace");
        let name = fixture["metadata"]["name"].as_str().expect("name");
        ensure_namespace(&client, namespace).await;
        let api = api_for(&client, kind, namespace);
        let object: DynamicObject = serde_json::from_value(fixture.clone()).expect("object");
        api.patch(
            name,
            &PatchParams::apply("fleet-api-test"),
            &Patch::Apply(&object),
        )
        .await
        .unwrap_or_else(|e| panic!("{file}: server-side apply refused: {e}"));
        let served = serde_json::to_value(api.get(name).await.expect("read back")).expect("json");
        assert_eq!(
            content(&served),
            content(&fixture),
            "{file}: the server pruned or changed fields"
        );
    }
}

async fn refused(client: &Client, kind: &str, object: Value) -> String {
    let api = api_for(client, kind, "default");
    let object: DynamicObject = serde_json::from_value(object).expect("object");
    match api.create(&PostParams::default(), &object).await {
        Ok(_) => panic!("{kind} {object:?} was accepted"),
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "{status:?}");
            status.message
        }
        Err(other) => panic!("unexpected error {other}"),
    }
}

#[tokio::test]
async fn invalid_objects_are_refused_naming_the_field() {
    let plane = plane_with_crds().await;
    let client = plane.client();
    let meta = json!({"name": "bad"});
    let cases = [
        ("GitRepo", json!({"branch": "main"}), "spec.repo"),
        ("GitRepo", json!({"repo": ""}), "spec.repo"),
        (
            "GitRepo",
            json!({"repo": "https://x", "paths": "simple"}),
            "spec.paths",
        ),
        (
            "GitRepo",
            json!({"repo": "https://x", "pollingInterval": "often"}),
            "spec.pollingInterval",
        ),
        (
            "GitRepo",
            json!({"repo": "https://x", "paused": "yes"}),
            "spec.paused",
        ),
        (
            "Bundle",
            json!({"targetCustomizationMode": "Sometimes"}),
            "spec.targetCustomizationMode",
        ),
        (
            "Bundle",
            json!({"resources": [{"name": "a", "encoding": "zip"}]}),
            "spec.resources[0].encoding",
        ),
        (
            "HelmOp",
            json!({"helm": {"releaseName": "Not_A_Release"}}),
            "spec.helm.releaseName",
        ),
        ("ClusterRegistrationToken", json!({"ttl": 240}), "spec.ttl"),
        (
            "ClusterGroup",
            json!({"selector": {"matchLabels": "env"}}),
            "spec.selector.matchLabels",
        ),
    ];
    for (kind, spec, field) in cases {
        let object = json!({
            "apiVersion": "fleet.cattle.io/v1alpha1", "kind": kind, "metadata": meta, "spec": spec,
        });
        let message = refused(&client, kind, object).await;
        assert!(
            message.contains(field),
            "{kind}: expected {field} in: {message}"
        );
    }
}

/// Column names the API server's table printer uses, as `kubectl get` shows them.
async fn columns(client: &Client, plural: &str) -> Vec<String> {
    let request = http::Request::get(format!(
        "/apis/fleet.cattle.io/v1alpha1/namespaces/fleet-default/{plural}"
    ))
    .header("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
    .body(Vec::new())
    .expect("request");
    let table: Value = client.request(request).await.expect("table");
    table["columnDefinitions"]
        .as_array()
        .expect("columns")
        .iter()
        .filter_map(|c| c["name"].as_str().map(str::to_uppercase))
        .collect()
}

#[tokio::test]
async fn kubectl_get_shows_fleets_columns_and_category() {
    let plane = plane_with_crds().await;
    let client = plane.client();
    let expected: [(&str, &[&str]); 6] = [
        (
            "gitrepos",
            &[
                "NAME",
                "REPO",
                "COMMIT",
                "BUNDLEDEPLOYMENTS-READY",
                "STATUS",
            ],
        ),
        (
            "helmops",
            &[
                "NAME",
                "REPO",
                "CHART",
                "VERSION",
                "BUNDLEDEPLOYMENTS-READY",
                "STATUS",
            ],
        ),
        ("bundles", &["NAME", "BUNDLEDEPLOYMENTS-READY", "STATUS"]),
        (
            "clusters",
            &["NAME", "BUNDLES-READY", "LAST-SEEN", "STATUS"],
        ),
        (
            "clustergroups",
            &["NAME", "CLUSTERS-READY", "BUNDLES-READY", "STATUS"],
        ),
        ("clusterregistrationtokens", &["NAME", "SECRET-NAME"]),
    ];
    for (plural, want) in expected {
        assert_eq!(columns(&client, plural).await, want, "{plural}");
    }

    let resources = client
        .list_api_group_resources("fleet.cattle.io/v1alpha1")
        .await
        .expect("discovery");
    let in_fleet: BTreeSet<_> = resources
        .resources
        .iter()
        .filter(|r| {
            r.categories
                .as_ref()
                .is_some_and(|c| c.iter().any(|c| c == "fleet"))
        })
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(
        in_fleet,
        BTreeSet::from(["clustergroups", "gitrepos", "helmops"])
    );
}

/// Every place a label selector can be written, as `(kind, object with the selector at
/// $SELECTOR, path the API server names)`.
fn selector_places(selector: &Value) -> Vec<(&'static str, Value, &'static str)> {
    let spec = |spec: Value| json!({"spec": spec});
    vec![
        (
            "ClusterGroup",
            spec(json!({"selector": selector})),
            "spec.selector",
        ),
        (
            "GitRepo",
            spec(json!({"repo": "https://x", "targets": [{"clusterSelector": selector}]})),
            "spec.targets[0].clusterSelector",
        ),
        (
            "GitRepo",
            spec(json!({"repo": "https://x", "targets": [{"clusterGroupSelector": selector}]})),
            "spec.targets[0].clusterGroupSelector",
        ),
        (
            "Bundle",
            spec(json!({"targetRestrictions": [{"clusterSelector": selector}]})),
            "spec.targetRestrictions[0].clusterSelector",
        ),
        (
            "Bundle",
            spec(json!({"dependsOn": [{"selector": selector}]})),
            "spec.dependsOn[0].selector",
        ),
        (
            "HelmOp",
            spec(json!({"targets": [{"clusterSelector": selector}]})),
            "spec.targets[0].clusterSelector",
        ),
        (
            "BundleNamespaceMapping",
            json!({"bundleSelector": selector}),
            "bundleSelector",
        ),
        (
            "GitRepoRestriction",
            json!({"allowedTargetNamespaceSelector": selector}),
            "allowedTargetNamespaceSelector",
        ),
    ]
}

/// Creates `object` as a dry run: `Err` with the API server's message when refused.
async fn dry_run(client: &Client, kind: &str, mut object: Value) -> Result<(), String> {
    object["apiVersion"] = json!("fleet.cattle.io/v1alpha1");
    object["kind"] = json!(kind);
    object["metadata"] = json!({"name": "selector"});
    let object: DynamicObject = serde_json::from_value(object).expect("object");
    let params = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    match api_for(client, kind, "default")
        .create(&params, &object)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 422 => Err(status.message),
        Err(other) => panic!("unexpected error {other}"),
    }
}

/// A selector Kubernetes could not parse is refused where it is written, in every kind that
/// holds one, naming the field; every selector Fleet's documentation uses is accepted.
#[tokio::test]
async fn invalid_label_selectors_are_refused_where_they_are_written() {
    let plane = plane_with_crds().await;
    let client = plane.client();
    let long_name = "a".repeat(64);
    let invalid = [
        json!({"matchExpressions": [{"key": "env", "operator": "Foo", "values": ["prod"]}]}),
        json!({"matchExpressions": [{"key": "env", "operator": "In"}]}),
        json!({"matchExpressions": [{"key": "env", "operator": "NotIn", "values": []}]}),
        json!({"matchExpressions": [{"key": "env", "operator": "Exists", "values": ["x"]}]}),
        json!({"matchExpressions": [{"key": "bad key", "operator": "Exists"}]}),
        json!({"matchExpressions": [{"key": "env", "operator": "In", "values": ["a b"]}]}),
        json!({"matchExpressions": [{"operator": "Exists"}]}),
        json!({"matchLabels": {"env": "prod!"}}),
        json!({"matchExpressions": [{"key": "Example.com/env", "operator": "Exists"}]}),
        json!({"matchExpressions": [{"key": long_name, "operator": "Exists"}]}),
        json!({"matchLabels": {"env": long_name}}),
    ];
    let mut refused_cases = 0;
    for selector in &invalid {
        for (kind, object, path) in selector_places(selector) {
            let message = dry_run(&client, kind, object)
                .await
                .err()
                .unwrap_or_else(|| panic!("{kind} {path} {selector} was accepted"));
            assert!(
                message.contains(path),
                "{kind}: expected {path} in: {message}"
            );
            refused_cases += 1;
        }
    }
    let valid = [
        json!({}),
        json!({"matchLabels": {"env": "prod"}}),
        json!({"matchLabels": {"fleet.cattle.io/cluster": "c-1", "empty": ""}}),
        json!({"matchLabels": {"management.cattle.io/cluster-display-name": "local"}}),
        json!({"matchExpressions": [
            {"key": "env", "operator": "In", "values": ["dev", "test"]},
            {"key": "example.com/tier", "operator": "NotIn", "values": [""]},
            {"key": "gpu", "operator": "Exists"},
            {"key": "legacy", "operator": "DoesNotExist", "values": []},
        ]}),
    ];
    for selector in &valid {
        for (kind, object, path) in selector_places(selector) {
            if let Err(message) = dry_run(&client, kind, object).await {
                panic!("{kind} {path} {selector} was refused: {message}");
            }
        }
    }
    assert_eq!(refused_cases, invalid.len() * 8);
}
