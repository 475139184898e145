//! Proof that the testkit's control plane is a real Kubernetes API server: storage, status
//! subresources, optimistic concurrency, RBAC, the token controller, namespace deletion and
//! garbage collection all behave as in a cluster.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use fleet_testkit::{ControlPlane, apply_crds, eventually, wait_deleted, wait_for};

const TIMEOUT: Duration = Duration::from_secs(30);

async fn plane() -> ControlPlane {
    match ControlPlane::start().await {
        Ok(plane) => plane,
        Err(e) => panic!("control plane did not start: {e}"),
    }
}

async fn create_namespace(client: &Client, name: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..Default::default()
        },
        ..Default::default()
    };
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
}

fn api_status(err: kube::Error) -> kube::core::Status {
    match err {
        kube::Error::Api(status) => *status,
        other => panic!("expected an API error, got {other}"),
    }
}

#[tokio::test]
async fn custom_resource_with_status_subresource() {
    let plane = plane().await;
    let client = plane.client();
    create_namespace(&client, "widgets").await;

    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.test.fleet-rs.io"},
        "spec": {
            "group": "test.fleet-rs.io",
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
            "scope": "Namespaced",
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {"size": {"type": "integer"}}},
                    "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}},
                }}},
            }],
        },
    }))
    .expect("CRD JSON");
    apply_crds(&client, &[crd]).await.expect("CRD established");

    let gvk = GroupVersionKind::gvk("test.fleet-rs.io", "v1", "Widget");
    let widgets: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), "widgets", &ApiResource::from_gvk(&gvk));
    let widget: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "test.fleet-rs.io/v1", "kind": "Widget",
        "metadata": {"name": "w1"},
        "spec": {"size": 3},
        // Ignored on create: status is only written through the subresource.
        "status": {"ready": true},
    }))
    .expect("widget JSON");
    let created = widgets
        .create(&PostParams::default(), &widget)
        .await
        .expect("create widget");
    assert_eq!(created.data.get("status"), None, "status ignored on create");

    let status =
        json!({"apiVersion": "test.fleet-rs.io/v1", "kind": "Widget", "status": {"ready": true}});
    widgets
        .patch_status("w1", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("patch status");
    let read = widgets.get("w1").await.expect("get widget");
    assert_eq!(read.data["status"]["ready"], json!(true));
    assert_eq!(read.data["spec"]["size"], json!(3));
}

#[tokio::test]
async fn lease_update_with_stale_resource_version_conflicts() {
    let plane = plane().await;
    let leases: Api<Lease> = Api::namespaced(plane.client(), "default");
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some("contended".to_owned()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some("a".to_owned()),
            lease_duration_seconds: Some(15),
            ..Default::default()
        }),
    };
    let created = leases
        .create(&PostParams::default(), &lease)
        .await
        .expect("create lease");

    let mut first = created.clone();
    first
        .spec
        .get_or_insert_with(Default::default)
        .holder_identity = Some("b".to_owned());
    leases
        .replace("contended", &PostParams::default(), &first)
        .await
        .expect("first update with the current resourceVersion");

    // `created` still carries the old resourceVersion: a second writer must lose.
    let mut stale = created;
    stale
        .spec
        .get_or_insert_with(Default::default)
        .holder_identity = Some("c".to_owned());
    let err = leases
        .replace("contended", &PostParams::default(), &stale)
        .await
        .expect_err("stale resourceVersion must be refused");
    let status = api_status(err);
    assert_eq!(status.code, 409, "{status:?}");
    let current = leases.get("contended").await.expect("get lease");
    assert_eq!(
        current.spec.and_then(|s| s.holder_identity).as_deref(),
        Some("b")
    );
}

#[tokio::test]
async fn rbac_denies_what_no_role_grants() {
    let plane = plane().await;
    let admin = plane.client();
    create_namespace(&admin, "team-a").await;
    create_namespace(&admin, "team-b").await;
    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), "team-a");
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            name: Some("reader".to_owned()),
            ..Default::default()
        },
        ..Default::default()
    };
    accounts
        .create(&PostParams::default(), &sa)
        .await
        .expect("create SA");
    let role = Role {
        metadata: ObjectMeta {
            name: Some("configmap-reader".to_owned()),
            ..Default::default()
        },
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["configmaps".to_owned()]),
            verbs: vec!["get".to_owned(), "list".to_owned()],
            ..Default::default()
        }]),
    };
    Api::<Role>::namespaced(admin.clone(), "team-a")
        .create(&PostParams::default(), &role)
        .await
        .expect("create role");
    let binding = RoleBinding {
        metadata: ObjectMeta {
            name: Some("reader".to_owned()),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".to_owned()),
            kind: "Role".to_owned(),
            name: "configmap-reader".to_owned(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_owned(),
            name: "reader".to_owned(),
            namespace: Some("team-a".to_owned()),
            ..Default::default()
        }]),
    };
    Api::<RoleBinding>::namespaced(admin.clone(), "team-a")
        .create(&PostParams::default(), &binding)
        .await
        .expect("create binding");

    let reader = plane
        .service_account_client("team-a", "reader")
        .await
        .expect("SA client");
    // The authorizer learns of the binding from its watch: wait for the grant to take effect.
    let team_a = Api::<ConfigMap>::namespaced(reader.clone(), "team-a");
    eventually(
        "the role grants listing ConfigMaps in team-a",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async {
            team_a
                .list(&Default::default())
                .await
                .map_err(|e| e.to_string())
        },
    )
    .await
    .expect("the role grants listing ConfigMaps in team-a");

    let denied = Api::<ConfigMap>::namespaced(reader.clone(), "team-b")
        .list(&Default::default())
        .await
        .expect_err("no role in team-b");
    assert_eq!(api_status(denied).code, 403);
    let denied = Api::<Secret>::namespaced(reader, "team-a")
        .list(&Default::default())
        .await
        .expect_err("the role does not grant Secrets");
    assert_eq!(api_status(denied).code, 403);

    // A certificate-authenticated user with no bindings is denied too (authentication is
    // real, not only impersonation).
    let nobody = plane.user_client("nobody", &[]).await.expect("user client");
    let denied = Api::<Namespace>::all(nobody)
        .list(&Default::default())
        .await
        .expect_err("nobody may list namespaces");
    let status = api_status(denied);
    assert_eq!(status.code, 403, "{status:?}");
    assert!(status.message.contains("\"nobody\""), "{}", status.message);
}

#[tokio::test]
async fn service_account_token_secret_is_filled_in() {
    let plane = plane().await;
    let client = plane.client();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some("default-token".to_owned()),
            annotations: Some(
                [(
                    "kubernetes.io/service-account.name".to_owned(),
                    "default".to_owned(),
                )]
                .into(),
            ),
            ..Default::default()
        },
        type_: Some("kubernetes.io/service-account-token".to_owned()),
        ..Default::default()
    };
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("create token secret");
    let filled = wait_for(&secrets, "default-token", TIMEOUT, |s: &Secret| {
        s.data.as_ref().is_some_and(|d| d.contains_key("token"))
    })
    .await
    .expect("the token controller fills the secret");
    let data = filled.data.expect("data");
    assert!(data.contains_key("ca.crt"), "root CA is included");
    let token = String::from_utf8(data["token"].0.clone()).expect("utf-8 token");
    assert_eq!(token.split('.').count(), 3, "a JWT");
}

#[tokio::test]
async fn dependents_are_garbage_collected_and_namespaces_deleted() {
    let plane = plane().await;
    let client = plane.client();
    create_namespace(&client, "gc").await;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "gc");
    let owner = maps
        .create(
            &PostParams::default(),
            &ConfigMap {
                metadata: ObjectMeta {
                    name: Some("owner".to_owned()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .expect("create owner");
    let dependent = ConfigMap {
        metadata: ObjectMeta {
            name: Some("dependent".to_owned()),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".to_owned(),
                kind: "ConfigMap".to_owned(),
                name: owner.name_any(),
                uid: owner.uid().expect("uid"),
                ..Default::default()
            }]),
            ..Default::default()
        },
        ..Default::default()
    };
    maps.create(&PostParams::default(), &dependent)
        .await
        .expect("create dependent");

    maps.delete("owner", &Default::default())
        .await
        .expect("delete owner");
    wait_deleted(&maps, "dependent", TIMEOUT)
        .await
        .expect("the garbage collector deletes the dependent");

    let namespaces: Api<Namespace> = Api::all(client);
    namespaces
        .delete("gc", &Default::default())
        .await
        .expect("delete namespace");
    wait_deleted(&namespaces, "gc", TIMEOUT)
        .await
        .expect("the namespace controller finishes the deletion");
}

#[tokio::test]
async fn two_planes_are_independent_and_stop_on_drop() {
    let (a, b) = tokio::join!(plane(), plane());
    assert_ne!(a.server(), b.server());
    create_namespace(&a.client(), "only-in-a").await;
    let in_b = Api::<Namespace>::all(b.client())
        .get_opt("only-in-a")
        .await
        .expect("get from b");
    assert!(in_b.is_none(), "b does not see a's objects");

    let dir = a.dir().to_owned();
    let server = a.server().to_owned();
    drop(a);
    assert!(!dir.exists(), "temp dir removed on drop");
    let port = server.rsplit(':').next().expect("port");
    assert!(
        std::net::TcpStream::connect(format!("127.0.0.1:{port}")).is_err(),
        "API server stopped on drop"
    );
    Api::<Namespace>::all(b.client())
        .list(&Default::default())
        .await
        .expect("b still serves");
}
