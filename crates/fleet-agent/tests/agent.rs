//! fleet-agent with fleet-controller on two real control planes (upstream and downstream):
//! the agent registers with a token, a Bundle reaches the downstream cluster as a Helm
//! release through the controller and the agent, its status rolls up, a change is applied,
//! a chart that fails keeps the old release and reports ErrApplied, and a deleted Bundle is
//! uninstalled; readiness per kind, dependsOn, valuesFrom, comparePatches, keepResources,
//! deleteNamespace and release-name conflicts; two agent replicas.

mod support;

use std::time::Duration;

use fleet_api::{Bundle, BundleState, Cluster};
use fleet_testkit::{wait_deleted, wait_for};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use support::{NS, Setup, WAIT, configmap_bundle, create};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundles_reach_a_registered_downstream_cluster_as_helm_releases() {
    let setup = Setup::start().await;
    let (up, down) = (setup.upstream.client(), setup.downstream.client());
    let controller = &setup.controller;
    let (agent, _) = setup.agent("agent");
    let clusters: Api<Cluster> = Api::namespaced(up.clone(), NS);
    let cluster = setup.registered(&agent).await;

    create::<fleet_api::ClusterGroup>(&up, "metadata:\n  name: default\nspec:\n  selector: {}\n")
        .await;
    create::<Bundle>(&up, &configmap_bundle("plain", "hello", "hi")).await;
    let configmaps: Api<ConfigMap> = Api::namespaced(down.clone(), "apps");
    wait_for(&configmaps, "hello", WAIT, |c| {
        c.data
            .as_ref()
            .and_then(|d| d.get("greeting"))
            .map(String::as_str)
            == Some("hi")
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", agent.log_tail(40)));
    let release_secrets = Api::<Secret>::namespaced(down.clone(), "apps")
        .list(&kube::api::ListParams::default().labels("owner=helm,name=plain"))
        .await
        .expect("list");
    assert!(
        !release_secrets.items.is_empty(),
        "a Helm release named after the bundle"
    );
    let bundles: Api<Bundle> = Api::namespaced(up.clone(), NS);
    wait_for(&bundles, "plain", WAIT, |b| {
        b.status.as_ref().is_some_and(|s| s.summary.ready == 1)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", controller.log_tail(30)));
    wait_for(&clusters, &cluster.name_any(), WAIT, |c| {
        c.status.as_ref().is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
    })
    .await
    .expect("cluster ready: agent alive, bundles ready");

    // Drift: an object edited by hand shows as Modified; with correctDrift it is put back.
    let edit = |value: &'static str| Patch::Merge(serde_json::json!({"data": {"greeting": value}}));
    configmaps
        .patch("hello", &PatchParams::default(), &edit("edited by hand"))
        .await
        .expect("edit");
    wait_for(&bundles, "plain", WAIT, |b| {
        b.status.as_ref().is_some_and(|s| s.summary.modified == 1)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", agent.log_tail(40)));
    let mut corrected = configmap_bundle("corrected", "guarded", "original");
    corrected.push_str("  correctDrift:\n    enabled: true\n");
    create::<Bundle>(&up, &corrected).await;
    let original = |c: &ConfigMap| {
        c.data
            .as_ref()
            .and_then(|d| d.get("greeting"))
            .map(String::as_str)
            == Some("original")
    };
    wait_for(&configmaps, "guarded", WAIT, original)
        .await
        .expect("deployed");
    configmaps
        .patch("guarded", &PatchParams::default(), &edit("edited by hand"))
        .await
        .expect("edit");
    wait_for(&configmaps, "guarded", WAIT, |c| {
        c.data
            .as_ref()
            .and_then(|d| d.get("greeting"))
            .map(String::as_str)
            == Some("edited by hand")
    })
    .await
    .expect("edit seen");
    wait_for(&configmaps, "guarded", WAIT, original)
        .await
        .unwrap_or_else(|e| panic!("drift corrected: {e}\n{}", agent.log_tail(40)));

    // A change is applied.
    bundles
        .patch(
            "plain",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"resources": [{"name": "cm.yaml", "content": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: hello\ndata:\n  greeting: hello again\n"}]}})),
        )
        .await
        .expect("change");
    wait_for(&configmaps, "hello", WAIT, |c| {
        c.data
            .as_ref()
            .and_then(|d| d.get("greeting"))
            .map(String::as_str)
            == Some("hello again")
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", agent.log_tail(40)));

    // A chart that does not render: ErrApplied with helm's message; the release stays.
    bundles
        .patch(
            "plain",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"resources": [
                {"name": "Chart.yaml", "content": "apiVersion: v2\nname: broken\nversion: 0.1.0\n"},
                {"name": "templates/cm.yaml", "content": "kind: ConfigMap\ndata: {{ .Values.x | nosuchfunction }}\n"},
            ]}})),
        )
        .await
        .expect("break");
    wait_for(&bundles, "plain", WAIT, |b| {
        b.status
            .as_ref()
            .is_some_and(|s| s.summary.err_applied == 1)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", agent.log_tail(40)));
    let bundle = bundles.get("plain").await.expect("bundle");
    let message = bundle
        .status
        .and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "Ready"))
        .and_then(|c| c.message)
        .unwrap_or_default();
    assert!(
        message.contains("nosuchfunction"),
        "helm's message reaches the Bundle: {message}"
    );
    configmaps
        .get("hello")
        .await
        .expect("the previous release keeps running");
    // And as an Event on the BundleDeployment, in the cluster's namespace upstream.
    fleet_testkit::wait_event(&up, None, "DeployFailed", "plain", "nosuchfunction")
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", agent.log_tail(40)));

    // Deleting the Bundle uninstalls the release downstream.
    bundles
        .delete("plain", &Default::default())
        .await
        .expect("delete");
    wait_deleted(&configmaps, "hello", WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", agent.log_tail(40)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leading_agent_deploys_and_a_standby_takes_over_with_the_saved_credentials() {
    let setup = Setup::start().await;
    let (up, down) = (setup.upstream.client(), setup.downstream.client());
    let (mut a, a_port) = setup.agent("agent-a");
    fleet_testkit::wait_role(a_port, "leader", WAIT)
        .await
        .expect("a leads");
    let (b, b_port) = setup.agent("agent-b");
    fleet_testkit::wait_role(b_port, "standby", WAIT)
        .await
        .expect("b stands by");
    setup.registered(&a).await;
    create::<fleet_api::ClusterGroup>(&up, "metadata:\n  name: default\nspec:\n  selector: {}\n")
        .await;
    create::<Bundle>(&up, &configmap_bundle("one", "first", "a")).await;
    let configmaps: Api<ConfigMap> = Api::namespaced(down.clone(), "apps");
    wait_for(&configmaps, "first", WAIT, |_| true)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", a.log_tail(30)));

    a.kill();
    fleet_testkit::wait_role(b_port, "leader", WAIT)
        .await
        .expect("b takes over");
    create::<Bundle>(&up, &configmap_bundle("two", "second", "b")).await;
    wait_for(&configmaps, "second", WAIT, |_| true)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", b.log_tail(30)));
    let clusters = Api::<Cluster>::namespaced(up.clone(), NS)
        .list(&Default::default())
        .await
        .expect("list");
    assert_eq!(
        clusters.items.len(),
        1,
        "the standby reused the saved credentials: one registration"
    );
}

/// Waits until Bundle `name` lists a BundleDeployment in `state`; its message.
async fn listed_message(
    bundles: &Api<Bundle>,
    name: &str,
    state: BundleState,
    logs: &impl Fn() -> String,
) -> String {
    let bundle = wait_for(bundles, name, WAIT, |b| {
        b.status.as_ref().is_some_and(|s| {
            s.summary
                .non_ready_resources
                .first()
                .is_some_and(|r| r.bundle_state == Some(state))
        })
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    bundle
        .status
        .and_then(|s| s.summary.non_ready_resources.into_iter().next())
        .and_then(|r| r.message)
        .unwrap_or_default()
}

/// A Helm chart bundle with a Deployment and a ConfigMap, `valuesFrom` a downstream
/// ConfigMap, `diff.comparePatches` on a ConfigMap field, `namespaceLabels` and
/// `deleteNamespace`.
const WEB_BUNDLE: &str = r#"metadata:
  name: web
spec:
  defaultNamespace: web
  deleteNamespace: true
  namespaceLabels:
    team: web
  helm:
    values:
      greeting: from-values
    valuesFrom:
    - configMapKeyRef:
        name: web-values
        namespace: config
  diff:
    comparePatches:
    - apiVersion: v1
      kind: ConfigMap
      name: web-settings
      jsonPointers: [/data/tuning]
  resources:
  - name: Chart.yaml
    content: "apiVersion: v2\nname: web\nversion: 0.1.0\n"
  - name: templates/settings.yaml
    content: |
      apiVersion: v1
      kind: ConfigMap
      metadata:
        name: web-settings
      data:
        greeting: {{ .Values.greeting | quote }}
        tuning: "1"
        other: "1"
  - name: templates/deployment.yaml
    content: |
      apiVersion: apps/v1
      kind: Deployment
      metadata:
        name: web
      spec:
        replicas: 1
        selector:
          matchLabels: {app: web}
        template:
          metadata:
            labels: {app: web}
          spec:
            containers:
            - name: web
              image: nginx:1.27
  targets:
  - clusterGroup: default
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_values_from_compare_patches_and_removal_options() {
    let setup = Setup::start().await;
    let (up, down) = (setup.upstream.client(), setup.downstream.client());
    let (agent, _) = setup.agent("agent");
    setup.registered(&agent).await;
    let logs = || format!("{}\n{}", agent.log_tail(40), setup.controller.log_tail(20));
    create::<fleet_api::ClusterGroup>(&up, "metadata:\n  name: default\nspec:\n  selector: {}\n")
        .await;
    let namespaces: Api<Namespace> = Api::all(down.clone());
    namespaces
        .create(
            &PostParams::default(),
            &support::yaml("metadata:\n  name: config\n"),
        )
        .await
        .expect("namespace");
    Api::<ConfigMap>::namespaced(down.clone(), "config")
        .create(
            &PostParams::default(),
            &support::yaml("metadata:\n  name: web-values\ndata:\n  values.yaml: |\n    greeting: from-values-from\n"),
        )
        .await
        .expect("values ConfigMap");
    create::<Bundle>(&up, WEB_BUNDLE).await;

    // valuesFrom wins over values.
    let settings: Api<ConfigMap> = Api::namespaced(down.clone(), "web");
    let greeting = |c: &ConfigMap, key: &str| {
        c.data
            .as_ref()
            .and_then(|d| d.get(key))
            .cloned()
            .unwrap_or_default()
    };
    wait_for(&settings, "web-settings", WAIT, |c| {
        greeting(c, "greeting") == "from-values-from"
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", logs()));

    // The agent labels the release namespace after helm returns: wait for it.
    wait_for(&namespaces, "web", WAIT, |n| {
        n.labels().get("team").map(String::as_str) == Some("web")
    })
    .await
    .unwrap_or_else(|e| panic!("namespaceLabels on the release namespace: {e}\n{}", logs()));

    // Nothing runs Deployments here (no kubelet, no deployment controller): the Deployment is
    // not ready, and the Bundle says which object and why.
    let bundles: Api<Bundle> = Api::namespaced(up.clone(), NS);
    let bundle = wait_for(&bundles, "web", WAIT, |b| {
        b.status.as_ref().is_some_and(|s| s.summary.not_ready == 1)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    let summary = bundle.status.expect("status").summary;
    let listed = &summary.non_ready_resources[0];
    let object = &listed.non_ready_status[0];
    assert_eq!(
        (
            object.resource.kind.as_deref(),
            object.resource.name.as_deref()
        ),
        (Some("Deployment"), Some("web"))
    );
    assert_eq!(
        object.summary.message,
        ["waiting for generation 1 to be observed"]
    );
    assert!(
        listed
            .message
            .as_deref()
            .is_some_and(|m| m.contains("deployment.apps web/web [in-progress]")),
        "{listed:?}"
    );

    // dependsOn: a bundle that needs web waits while web is not ready.
    let mut after = configmap_bundle("after", "after", "web-first");
    after.push_str("  dependsOn:\n  - name: web\n");
    create::<Bundle>(&up, &after).await;
    let message = listed_message(&bundles, "after", BundleState::WaitApplied, &logs).await;
    assert_eq!(message, "waiting for dependencies: web is NotReady");
    let apps: Api<ConfigMap> = Api::namespaced(down.clone(), "apps");
    assert!(
        apps.get_opt("after").await.expect("get").is_none(),
        "not deployed yet"
    );

    // What the deployment controller and kubelet would report: the Bundle becomes ready.
    let deployments: Api<Deployment> = Api::namespaced(down.clone(), "web");
    let generation = deployments
        .get("web")
        .await
        .expect("deployment")
        .metadata
        .generation;
    deployments
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(
                serde_json::json!({"status": {"observedGeneration": generation,
                "replicas": 1, "updatedReplicas": 1, "readyReplicas": 1, "availableReplicas": 1}}),
            ),
        )
        .await
        .expect("deployment status");
    wait_for(&bundles, "web", WAIT, |b| {
        b.status.as_ref().is_some_and(|s| s.summary.ready == 1)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    wait_for(&apps, "after", WAIT, |_| true)
        .await
        .unwrap_or_else(|e| panic!("the dependent bundle follows: {e}\n{}", logs()));

    // comparePatches: an edit of /data/tuning is not drift; one of /data/other is.
    settings
        .patch(
            "web-settings",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"data": {"tuning": "9", "other": "9"}})),
        )
        .await
        .expect("edit");
    let bundle = wait_for(&bundles, "web", WAIT, |b| {
        b.status.as_ref().is_some_and(|s| s.summary.modified == 1)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    let modified = &bundle.status.expect("status").summary.non_ready_resources[0].modified_status;
    let patch = modified[0].patch.clone().unwrap_or_default();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&patch).expect("patch"),
        serde_json::json!({"data": {"other": "1"}}),
        "only the compared field is drift"
    );

    // An object helm marks as the release's that the release no longer holds: `delete`.
    let stray: ConfigMap = support::yaml(
        "metadata:\n  name: stray\n  annotations:\n    meta.helm.sh/release-name: web\n    meta.helm.sh/release-namespace: web\n",
    );
    settings
        .create(&PostParams::default(), &stray)
        .await
        .expect("stray");
    wait_for(&bundles, "web", WAIT, |b| {
        b.status.as_ref().is_some_and(|s| {
            s.summary.non_ready_resources.iter().any(|r| {
                r.modified_status
                    .iter()
                    .any(|m| m.delete && m.resource.name.as_deref() == Some("stray"))
            })
        })
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", logs()));

    // keepResources: the release is forgotten, its objects stay.
    let mut kept = configmap_bundle("kept", "kept", "stays");
    kept.push_str("  keepResources: true\n");
    create::<Bundle>(&up, &kept).await;
    wait_for(&apps, "kept", WAIT, |_| true)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    bundles
        .delete("kept", &Default::default())
        .await
        .expect("delete");
    let releases: Api<Secret> = Api::namespaced(down.clone(), "apps");
    fleet_testkit::eventually(
        "Helm forgot the release",
        WAIT,
        Duration::from_millis(200),
        || async {
            let list = releases
                .list(&ListParams::default().labels("owner=helm,name=kept"))
                .await
                .map_err(|e| e.to_string())?;
            match list.items.len() {
                0 => Ok(()),
                n => Err(format!("{n} release secrets left")),
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    apps.get("kept")
        .await
        .expect("keepResources keeps the objects");

    // A second bundle asking for the same release: an error, and the first one untouched,
    // also when the second is removed.
    create::<Bundle>(
        &up,
        "metadata:\n  name: twin\nspec:\n  defaultNamespace: web\n  helm:\n    releaseName: web\n  resources:\n  - name: cm.yaml\n    content: \"apiVersion: v1\\nkind: ConfigMap\\nmetadata:\\n  name: twin\\n\"\n  targets:\n  - clusterGroup: default\n",
    )
    .await;
    let message = listed_message(&bundles, "twin", BundleState::ErrApplied, &logs).await;
    assert!(
        message.contains("release web/web is deployed by bundle deployment web"),
        "{message}"
    );
    bundles
        .delete("twin", &Default::default())
        .await
        .expect("delete");
    let deployments_of_twin: Api<fleet_api::BundleDeployment> = Api::all(up.clone());
    fleet_testkit::wait_for_count(
        &deployments_of_twin,
        "BundleDeployments of twin",
        0,
        WAIT,
        |bd| {
            bd.labels()
                .get(fleet_api::labels::BUNDLE_NAME)
                .map(String::as_str)
                == Some("twin")
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    settings
        .get("web-settings")
        .await
        .expect("the first bundle's release is untouched");

    // serviceAccount: helm acts as that ServiceAccount of the agent's namespace; one without
    // any RBAC may deploy nothing.
    Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(down.clone(), "default")
        .create(
            &PostParams::default(),
            &support::yaml("metadata:\n  name: nobody\n"),
        )
        .await
        .expect("service account");
    let mut restricted = configmap_bundle("restricted", "restricted", "no");
    restricted.push_str("  serviceAccount: nobody\n");
    create::<Bundle>(&up, &restricted).await;
    let message = listed_message(&bundles, "restricted", BundleState::ErrApplied, &logs).await;
    assert!(
        message.contains("system:serviceaccount:default:nobody") && message.contains("forbidden"),
        "{message}"
    );

    // allowedTargetNamespaceSelector (a GitRepoRestriction's): only matching namespaces.
    let mut fenced = configmap_bundle("fenced", "fenced", "no");
    fenced.push_str("  allowedTargetNamespaceSelector:\n    matchLabels:\n      team: web\n");
    create::<Bundle>(&up, &fenced).await;
    let message = listed_message(&bundles, "fenced", BundleState::ErrApplied, &logs).await;
    assert_eq!(
        message,
        "namespace apps does not match allowedTargetNamespaceSelector"
    );

    // deleteNamespace: removing the bundle removes its namespace.
    bundles
        .delete("web", &Default::default())
        .await
        .expect("delete");
    wait_deleted(&namespaces, "web", WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
}
