//! fleet-agent with fleet-controller on two real control planes (upstream and downstream):
//! the agent registers with a token, a Bundle reaches the downstream cluster as a Helm
//! release through the controller and the agent, its status rolls up, a change is applied,
//! a chart that fails keeps the old release and reports ErrApplied, and a deleted Bundle is
//! uninstalled; readiness per kind, dependsOn, valuesFrom, comparePatches, keepResources,
//! deleteNamespace and release-name conflicts; two agent replicas.

mod support;

use std::time::Duration;

use fleet_api::{Bundle, BundleState, Cluster};
use fleet_testkit::{ManagedProcess, wait_deleted, wait_for};
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
    let (agent, _) = setup.agent("agent");
    setup.registered(&agent).await;
    let web = Web::deployed(&setup, &agent).await;
    web.waits_for_its_deployment_and_holds_back_dependents()
        .await;
    web.reports_drift_outside_compare_patches_and_stray_objects()
        .await;
    web.keep_resources_leaves_the_objects().await;
    web.refuses_a_second_bundle_for_its_release().await;
    web.service_account_and_namespace_fence_refuse().await;
    web.delete_namespace_removes_it().await;
}

/// The `web` Bundle (`WEB_BUNDLE`) deployed on the downstream cluster of a [`Setup`], and the
/// phases of the test above, in order: each one starts from the state the one before left.
struct Web<'a> {
    setup: &'a Setup,
    agent: &'a ManagedProcess,
    up: kube::Client,
    down: kube::Client,
    bundles: Api<Bundle>,
    /// The release's ConfigMap `web-settings` lives here (namespace `web`).
    settings: Api<ConfigMap>,
    /// The small configmap bundles deploy into namespace `apps`.
    apps: Api<ConfigMap>,
    namespaces: Api<Namespace>,
}

impl<'a> Web<'a> {
    /// Creates the `default` group, the `valuesFrom` ConfigMap and the `web` Bundle; waits
    /// until valuesFrom (which wins over values) and `namespaceLabels` are deployed.
    async fn deployed(setup: &'a Setup, agent: &'a ManagedProcess) -> Self {
        let (up, down) = (setup.upstream.client(), setup.downstream.client());
        let web = Self {
            setup,
            agent,
            bundles: Api::namespaced(up.clone(), NS),
            settings: Api::namespaced(down.clone(), "web"),
            apps: Api::namespaced(down.clone(), "apps"),
            namespaces: Api::all(down.clone()),
            up,
            down,
        };
        create::<fleet_api::ClusterGroup>(
            &web.up,
            "metadata:\n  name: default\nspec:\n  selector: {}\n",
        )
        .await;
        web.namespaces
            .create(
                &PostParams::default(),
                &support::yaml("metadata:\n  name: config\n"),
            )
            .await
            .expect("namespace");
        Api::<ConfigMap>::namespaced(web.down.clone(), "config")
            .create(
                &PostParams::default(),
                &support::yaml("metadata:\n  name: web-values\ndata:\n  values.yaml: |\n    greeting: from-values-from\n"),
            )
            .await
            .expect("values ConfigMap");
        create::<Bundle>(&web.up, WEB_BUNDLE).await;

        let greeting = |c: &ConfigMap| {
            c.data
                .as_ref()
                .and_then(|d| d.get("greeting"))
                .cloned()
                .unwrap_or_default()
        };
        wait_for(&web.settings, "web-settings", WAIT, |c| {
            greeting(c) == "from-values-from"
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", web.logs()));
        // The agent labels the release namespace after helm returns: wait for it.
        wait_for(&web.namespaces, "web", WAIT, |n| {
            n.labels().get("team").map(String::as_str) == Some("web")
        })
        .await
        .unwrap_or_else(|e| {
            panic!(
                "namespaceLabels on the release namespace: {e}\n{}",
                web.logs()
            )
        });
        web
    }

    fn logs(&self) -> String {
        format!(
            "{}\n{}",
            self.agent.log_tail(40),
            self.setup.controller.log_tail(20)
        )
    }

    /// Waits until Bundle `name` lists a BundleDeployment in `state`; its message.
    async fn listed_message(&self, name: &str, state: BundleState) -> String {
        listed_message(&self.bundles, name, state, &|| self.logs()).await
    }

    /// Nothing runs Deployments here (no kubelet, no deployment controller): the Deployment is
    /// not ready, the Bundle says which object and why, and a Bundle that `dependsOn` it waits;
    /// once the Deployment reports ready, both are deployed.
    async fn waits_for_its_deployment_and_holds_back_dependents(&self) {
        let bundle = wait_for(&self.bundles, "web", WAIT, |b| {
            b.status.as_ref().is_some_and(|s| s.summary.not_ready == 1)
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", self.logs()));
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

        let mut after = configmap_bundle("after", "after", "web-first");
        after.push_str("  dependsOn:\n  - name: web\n");
        create::<Bundle>(&self.up, &after).await;
        let message = self.listed_message("after", BundleState::WaitApplied).await;
        assert_eq!(message, "waiting for dependencies: web is NotReady");
        assert!(
            self.apps.get_opt("after").await.expect("get").is_none(),
            "not deployed yet"
        );

        // What the deployment controller and kubelet would report: the Bundle becomes ready.
        let deployments: Api<Deployment> = Api::namespaced(self.down.clone(), "web");
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
        wait_for(&self.bundles, "web", WAIT, |b| {
            b.status.as_ref().is_some_and(|s| s.summary.ready == 1)
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", self.logs()));
        wait_for(&self.apps, "after", WAIT, |_| true)
            .await
            .unwrap_or_else(|e| panic!("the dependent bundle follows: {e}\n{}", self.logs()));
    }

    /// comparePatches: an edit of /data/tuning is not drift, one of /data/other is; an object
    /// helm marks as the release's that the release no longer holds is listed to `delete`.
    async fn reports_drift_outside_compare_patches_and_stray_objects(&self) {
        self.settings
            .patch(
                "web-settings",
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"data": {"tuning": "9", "other": "9"}})),
            )
            .await
            .expect("edit");
        let bundle = wait_for(&self.bundles, "web", WAIT, |b| {
            b.status.as_ref().is_some_and(|s| s.summary.modified == 1)
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", self.logs()));
        let modified =
            &bundle.status.expect("status").summary.non_ready_resources[0].modified_status;
        let patch = modified[0].patch.clone().unwrap_or_default();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&patch).expect("patch"),
            serde_json::json!({"data": {"other": "1"}}),
            "only the compared field is drift"
        );

        let stray: ConfigMap = support::yaml(
            "metadata:\n  name: stray\n  annotations:\n    meta.helm.sh/release-name: web\n    meta.helm.sh/release-namespace: web\n",
        );
        self.settings
            .create(&PostParams::default(), &stray)
            .await
            .expect("stray");
        wait_for(&self.bundles, "web", WAIT, |b| {
            b.status.as_ref().is_some_and(|s| {
                s.summary.non_ready_resources.iter().any(|r| {
                    r.modified_status
                        .iter()
                        .any(|m| m.delete && m.resource.name.as_deref() == Some("stray"))
                })
            })
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", self.logs()));
    }

    /// keepResources: a deleted Bundle's release is forgotten, its objects stay.
    async fn keep_resources_leaves_the_objects(&self) {
        let mut kept = configmap_bundle("kept", "kept", "stays");
        kept.push_str("  keepResources: true\n");
        create::<Bundle>(&self.up, &kept).await;
        wait_for(&self.apps, "kept", WAIT, |_| true)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", self.logs()));
        self.bundles
            .delete("kept", &Default::default())
            .await
            .expect("delete");
        let releases: Api<Secret> = Api::namespaced(self.down.clone(), "apps");
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
        .unwrap_or_else(|e| panic!("{e}\n{}", self.logs()));
        self.apps
            .get("kept")
            .await
            .expect("keepResources keeps the objects");
    }

    /// A second Bundle asking for the same release: an error, and the first one untouched,
    /// also when the second is removed.
    async fn refuses_a_second_bundle_for_its_release(&self) {
        create::<Bundle>(
            &self.up,
            "metadata:\n  name: twin\nspec:\n  defaultNamespace: web\n  helm:\n    releaseName: web\n  resources:\n  - name: cm.yaml\n    content: \"apiVersion: v1\\nkind: ConfigMap\\nmetadata:\\n  name: twin\\n\"\n  targets:\n  - clusterGroup: default\n",
        )
        .await;
        let message = self.listed_message("twin", BundleState::ErrApplied).await;
        assert!(
            message.contains("release web/web is deployed by bundle deployment web"),
            "{message}"
        );
        self.bundles
            .delete("twin", &Default::default())
            .await
            .expect("delete");
        let deployments_of_twin: Api<fleet_api::BundleDeployment> = Api::all(self.up.clone());
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
        .unwrap_or_else(|e| panic!("{e}\n{}", self.logs()));
        self.settings
            .get("web-settings")
            .await
            .expect("the first bundle's release is untouched");
    }

    /// serviceAccount: helm acts as that ServiceAccount of the agent's namespace, and one
    /// without any RBAC may deploy nothing; allowedTargetNamespaceSelector (a
    /// GitRepoRestriction's): only matching namespaces.
    async fn service_account_and_namespace_fence_refuse(&self) {
        Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(self.down.clone(), "default")
            .create(
                &PostParams::default(),
                &support::yaml("metadata:\n  name: nobody\n"),
            )
            .await
            .expect("service account");
        let mut restricted = configmap_bundle("restricted", "restricted", "no");
        restricted.push_str("  serviceAccount: nobody\n");
        create::<Bundle>(&self.up, &restricted).await;
        let message = self
            .listed_message("restricted", BundleState::ErrApplied)
            .await;
        assert!(
            message.contains("system:serviceaccount:default:nobody")
                && message.contains("forbidden"),
            "{message}"
        );

        let mut fenced = configmap_bundle("fenced", "fenced", "no");
        fenced.push_str("  allowedTargetNamespaceSelector:\n    matchLabels:\n      team: web\n");
        create::<Bundle>(&self.up, &fenced).await;
        let message = self.listed_message("fenced", BundleState::ErrApplied).await;
        assert_eq!(
            message,
            "namespace apps does not match allowedTargetNamespaceSelector"
        );
    }

    /// deleteNamespace: removing the Bundle removes its namespace.
    async fn delete_namespace_removes_it(&self) {
        self.bundles
            .delete("web", &Default::default())
            .await
            .expect("delete");
        wait_deleted(&self.namespaces, "web", WAIT)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", self.logs()));
    }
}
