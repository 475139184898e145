//! fleet-controller on a real control plane: targeting creates and removes
//! BundleDeployments, status rolls up (Bundles, Clusters, ClusterGroups, GitRepos, HelmOps),
//! registration issues credentials limited to the cluster's own namespace
//! (`controller/registration.rs`), and a killed leader hands over. Rollouts and
//! BundleNamespaceMappings: `tests/rollout.rs`.

#[path = "controller/registration.rs"]
mod registration;
mod support;

use fleet_api::{Bundle, Cluster, ClusterGroup, GitRepo};
use fleet_testkit::{wait_deleted, wait_for};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use support::*;

async fn label_cluster(client: &Client, cluster: &str, env: Option<&str>) {
    Api::<Cluster>::namespaced(client.clone(), NS)
        .patch(
            cluster,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"labels": {"env": env}}})),
        )
        .await
        .expect("label cluster");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targeting_changes_create_and_remove_bundle_deployments_and_status_rolls_up() {
    let plane = plane().await;
    let client = plane.client();
    let work = tempfile::tempdir().expect("tempdir");
    let controller = Controller::start(&plane, "controller-0", work.path());
    targets_a_group_with_values_per_cluster(&client, &controller).await;
    retargets_as_cluster_labels_change(&client).await;
    rolls_up_what_the_agent_reports(&client).await;
    rolls_up_a_helmops_bundle(&client, &controller).await;
    an_idle_resync_writes_nothing(&client, &controller).await;
    deleting_a_bundle_deletes_its_deployments_first(&client).await;
}

/// Clusters c1 (dev) and c2 (prod), group `prod`, GitRepo `repo` and its Bundle `app`
/// targeting `prod`: c2 gets a BundleDeployment, labelled, with its templated values and its
/// content stored; c1 none.
async fn targets_a_group_with_values_per_cluster(client: &Client, controller: &Controller) {
    for (name, env) in [("c1", "dev"), ("c2", "prod")] {
        create::<Cluster>(
            client,
            &format!("metadata:\n  name: {name}\n  labels:\n    env: {env}\nspec: {{}}\n"),
        )
        .await;
    }
    create::<ClusterGroup>(
        client,
        "metadata:\n  name: prod\nspec:\n  selector:\n    matchLabels:\n      env: prod\n",
    )
    .await;
    create::<GitRepo>(
        client,
        "metadata:\n  name: repo\nspec:\n  repo: https://example.com/repo\n",
    )
    .await;
    create::<Bundle>(
        client,
        "metadata:\n  name: app\n  labels:\n    fleet.cattle.io/repo-name: repo\nspec:\n  helm:\n    values:\n      where: ${ .ClusterName }\n  resources:\n  - name: cm.yaml\n    content: 'kind: ConfigMap'\n  targets:\n  - name: prod\n    clusterGroup: prod\n",
    )
    .await;

    let bd = wait_for(&bds(client, "c2"), "app", WAIT, |_| true)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", controller.process.log_tail(40)));
    let labels = bd.labels();
    assert_eq!(
        labels.get("fleet.cattle.io/cluster").map(String::as_str),
        Some("c2")
    );
    assert_eq!(
        labels.get("fleet.cattle.io/repo-name").map(String::as_str),
        Some("repo")
    );
    let values = bd
        .spec
        .options
        .helm
        .clone()
        .and_then(|h| h.values)
        .unwrap_or_default();
    assert_eq!(values.get("where").and_then(|v| v.as_str()), Some("c2"));
    let manifest = bd.spec.deployment_id.clone().unwrap_or_default();
    let content_name = manifest.split(':').next().unwrap_or_default().to_owned();
    Api::<fleet_api::Content>::all(client.clone())
        .get(&content_name)
        .await
        .expect("content stored");
    assert!(
        bds(client, "c1")
            .get_opt("app")
            .await
            .expect("get")
            .is_none(),
        "dev cluster not targeted"
    );
}

/// Retargeting: c1 joins the group, c2 leaves it.
async fn retargets_as_cluster_labels_change(client: &Client) {
    label_cluster(client, "c1", Some("prod")).await;
    wait_for(&bds(client, "c1"), "app", WAIT, |_| true)
        .await
        .expect("c1 targeted");
    label_cluster(client, "c2", None).await;
    wait_deleted(&bds(client, "c2"), "app", WAIT)
        .await
        .expect("c2 untargeted");
}

/// The agent reports: the Bundle, Cluster, ClusterGroup and GitRepo roll-ups follow.
async fn rolls_up_what_the_agent_reports(client: &Client) {
    let bundles: Api<Bundle> = Api::namespaced(client.clone(), NS);
    wait_for(&bundles, "app", WAIT, |b| {
        b.status
            .as_ref()
            .is_some_and(|s| s.summary.desired_ready == 1 && s.summary.wait_applied == 1)
    })
    .await
    .expect("bundle waits for the agent");
    let bd = bds(client, "c1").get("app").await.expect("bd");
    report_deployed(client, &bd).await;
    let bundle = wait_for(&bundles, "app", WAIT, |b| {
        b.status.as_ref().is_some_and(|s| s.summary.ready == 1)
    })
    .await
    .expect("bundle ready");
    let status = bundle.status.unwrap_or_default();
    assert_eq!(status.display.ready_clusters.as_deref(), Some("1/1"));
    assert!(
        status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    );
    let clusters: Api<Cluster> = Api::namespaced(client.clone(), NS);
    let c1 = wait_for(&clusters, "c1", WAIT, |c| {
        c.status.as_ref().is_some_and(|s| s.summary.ready == 1)
    })
    .await
    .expect("cluster summary");
    let ready = c1
        .status
        .unwrap_or_default()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .expect("ready");
    assert_eq!(ready.status, "False", "no agent ever checked in");
    assert!(
        ready.message.unwrap_or_default().contains("agent"),
        "says why"
    );
    let groups: Api<ClusterGroup> = Api::namespaced(client.clone(), NS);
    wait_for(&groups, "prod", WAIT, |g| {
        g.status
            .as_ref()
            .is_some_and(|s| s.cluster_count == 1 && s.summary.ready == 1)
    })
    .await
    .expect("group summary");
    let gitrepos: Api<GitRepo> = Api::namespaced(client.clone(), NS);
    wait_for(&gitrepos, "repo", WAIT, |g| {
        g.status
            .as_ref()
            .is_some_and(|s| s.base.display.ready_bundle_deployments.as_deref() == Some("1/1"))
    })
    .await
    .expect("gitrepo roll-up");
}

/// A HelmOp's Bundle: the HelmOp rolls up too; the Cluster counts ready repos and ops.
async fn rolls_up_a_helmops_bundle(client: &Client, controller: &Controller) {
    let clusters: Api<Cluster> = Api::namespaced(client.clone(), NS);
    create::<fleet_api::HelmOp>(client, "metadata:\n  name: chart\nspec: {}\n").await;
    create::<Bundle>(
        client,
        "metadata:\n  name: chart\n  labels:\n    fleet.cattle.io/fleet-helm-name: chart\nspec:\n  resources:\n  - name: cm.yaml\n    content: 'kind: ConfigMap'\n  targets:\n  - clusterGroup: prod\n",
    )
    .await;
    let bd = wait_for(&bds(client, "c1"), "chart", WAIT, |_| true)
        .await
        .expect("helmop bundle deployed");
    report_deployed(client, &bd).await;
    let helmops: Api<fleet_api::HelmOp> = Api::namespaced(client.clone(), NS);
    wait_for(&helmops, "chart", WAIT, |h| {
        h.status.as_ref().is_some_and(|s| {
            s.base.display.ready_bundle_deployments.as_deref() == Some("1/1")
                && s.base.ready_clusters == 1
        })
    })
    .await
    .unwrap_or_else(|e| panic!("helmop roll-up: {e}\n{}", controller.process.log_tail(20)));
    wait_for(&clusters, "c1", WAIT, |c| {
        c.status.as_ref().is_some_and(|s| {
            (
                s.ready_git_repos,
                s.desired_ready_git_repos,
                s.ready_helm_ops,
                s.desired_ready_helm_ops,
            ) == (1, 1, 1, 1)
        })
    })
    .await
    .expect("cluster counts ready git repos and helm ops");
}

/// Idle: once the roll-ups have settled (no write for a polling interval), a resync writes
/// nothing.
async fn an_idle_resync_writes_nothing(client: &Client, controller: &Controller) {
    let last = std::sync::Mutex::new(-1.0);
    fleet_testkit::eventually(
        "the controller to settle",
        WAIT,
        std::time::Duration::from_millis(500),
        || async {
            let now = controller.metric("fleet_controller_writes_total").await;
            let mut last = last.lock().expect("lock");
            let settled = now == *last;
            *last = now;
            if settled {
                Ok(())
            } else {
                Err(now.to_string())
            }
        },
    )
    .await
    .expect("settled");
    let writes = controller.metric("fleet_controller_writes_total").await;
    let reconciles = controller
        .metric("fleet_controller_reconciles_total{controller=\"bundle\",result=\"ok\"}")
        .await;
    Api::<Bundle>::namespaced(client.clone(), NS)
        .patch(
            "app",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"annotations": {"touch": "1"}}})),
        )
        .await
        .expect("touch");
    fleet_testkit::eventually(
        "a resync",
        WAIT,
        std::time::Duration::from_millis(100),
        || async {
            let now = controller
                .metric("fleet_controller_reconciles_total{controller=\"bundle\",result=\"ok\"}")
                .await;
            if now > reconciles {
                Ok(())
            } else {
                Err(now.to_string())
            }
        },
    )
    .await
    .expect("reconciled");
    assert_eq!(
        controller.metric("fleet_controller_writes_total").await,
        writes,
        "an idle resync writes nothing\n{}",
        controller.process.log_tail(12)
    );
}

/// Deleting the Bundle deletes its BundleDeployments first.
async fn deleting_a_bundle_deletes_its_deployments_first(client: &Client) {
    let bundles: Api<Bundle> = Api::namespaced(client.clone(), NS);
    bundles
        .delete("app", &Default::default())
        .await
        .expect("delete");
    wait_deleted(&bds(client, "c1"), "app", WAIT)
        .await
        .expect("bd deleted");
    wait_deleted(&bundles, "app", WAIT)
        .await
        .expect("bundle gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_hands_the_work_over() {
    let plane = plane().await;
    let client = plane.client();
    let work = tempfile::tempdir().expect("tempdir");
    let mut a = Controller::start(&plane, "controller-a", work.path());
    a.wait_role("leader").await;
    // Fleet's bootstrap: the management cluster in fleet-local, in the group `default`.
    let local: Api<Cluster> = Api::namespaced(client.clone(), "fleet-local");
    wait_for(&local, "local", WAIT, |c| {
        c.labels().get("name").map(String::as_str) == Some("local")
    })
    .await
    .expect("bootstrapped");
    wait_for(
        &Api::<ClusterGroup>::namespaced(client.clone(), "fleet-local"),
        "default",
        WAIT,
        |_| true,
    )
    .await
    .expect("default group");
    let b = Controller::start(&plane, "controller-b", work.path());
    b.wait_role("standby").await;
    create::<Cluster>(&client, "metadata:\n  name: c1\nspec: {}\n").await;
    create::<ClusterGroup>(
        &client,
        "metadata:\n  name: default\nspec:\n  selector: {}\n",
    )
    .await;
    create::<Bundle>(
        &client,
        "metadata:\n  name: one\nspec:\n  targets:\n  - clusterGroup: default\n",
    )
    .await;
    wait_for(&bds(&client, "c1"), "one", WAIT, |_| true)
        .await
        .expect("leader created it");
    assert_eq!(
        b.metric("fleet_controller_writes_total").await,
        0.0,
        "the standby writes nothing"
    );

    a.process.kill();
    b.wait_role("leader").await;
    create::<Bundle>(
        &client,
        "metadata:\n  name: two\nspec:\n  targets:\n  - clusterGroup: default\n",
    )
    .await;
    wait_for(&bds(&client, "c1"), "two", WAIT, |_| true)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", b.process.log_tail(30)));
}

/// A first run against a fresh cluster: the namespace of the Lease does not exist yet. The
/// controller creates it and leads, instead of waiting forever for a Lease it cannot create.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_run_creates_the_namespace_it_leads_in() {
    use k8s_openapi::api::core::v1::Namespace;
    let plane = plane().await;
    let work = tempfile::tempdir().expect("tempdir");
    let port = fleet_testkit::ports::free_port().expect("port");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_fleet-controller"));
    cmd.args([
        format!("--kubeconfig={}", plane.kubeconfig_path().display()),
        format!("--metrics-bind-address=127.0.0.1:{port}"),
        format!("--health-bind-address=127.0.0.1:{port}"),
    ]);
    let controller = fleet_testkit::ManagedProcess::spawn(
        "controller",
        cmd,
        &work.path().join("controller.log"),
        fleet_testkit::Lifetime::Owned,
    )
    .expect("spawn");
    fleet_testkit::wait_role(port, "leader", WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", controller.log_tail(20)));
    Api::<Namespace>::all(plane.client())
        .get("cattle-fleet-system")
        .await
        .expect("the default namespace was created");
}

/// A ClusterGroup whose selector cannot be parsed is not Ready and says why, instead of
/// reporting Ready with 0 clusters. (The API server refuses most bad selectors, see fleet-api's
/// `invalid_label_selectors_are_refused_where_they_are_written`; a bad `matchLabels` key is
/// what its schema cannot express.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_group_with_an_invalid_selector_says_so() {
    let plane = plane().await;
    let client = plane.client();
    let work = tempfile::tempdir().expect("tempdir");
    let controller = Controller::start(&plane, "controller-0", work.path());
    create::<ClusterGroup>(
        &client,
        "metadata:\n  name: bad\nspec:\n  selector:\n    matchLabels:\n      -env: prod\n",
    )
    .await;
    let groups: Api<ClusterGroup> = Api::namespaced(client.clone(), NS);
    let bad = wait_for(&groups, "bad", WAIT, |g| {
        g.status.as_ref().is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "False")
        })
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", controller.process.log_tail(20)));
    let message = bad
        .status
        .and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "Ready"))
        .and_then(|c| c.message)
        .unwrap_or_default();
    assert!(message.contains("invalid spec.selector"), "{message}");
}

/// The Ready condition of GitRepo `name` in `NS`: (status, message).
fn gitrepo_ready(gitrepo: &GitRepo) -> Option<(String, String)> {
    let status = gitrepo.status.as_ref()?;
    let ready = status.base.conditions.iter().find(|c| c.type_ == "Ready")?;
    Some((
        ready.status.clone(),
        ready.message.clone().unwrap_or_default(),
    ))
}

/// A GitRepo is Ready only once synced and while each of its Bundles is: a Bundle that
/// cannot be targeted (it has no BundleDeployments to say so) makes it not Ready with the
/// Bundle's reason, and fixing the Bundle makes it Ready. gitjob's own conditions and the
/// roll-up's `Ready` live side by side (conditions are a list map keyed by type).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gitrepo_is_not_ready_while_one_of_its_bundles_cannot_be_targeted() {
    let plane = plane().await;
    let client = plane.client();
    let work = tempfile::tempdir().expect("tempdir");
    let controller = Controller::start(&plane, "controller-0", work.path());
    let log = || controller.process.log_tail(20);
    create::<Cluster>(&client, "metadata:\n  name: c1\nspec: {}\n").await;
    create::<GitRepo>(
        &client,
        "metadata:\n  name: repo\nspec:\n  repo: https://example.com/repo\n",
    )
    .await;
    let gitrepos: Api<GitRepo> = Api::namespaced(client.clone(), NS);
    let waiting = |g: &GitRepo| {
        gitrepo_ready(g).is_some_and(|(s, m)| s == "False" && m.contains("first sync"))
    };
    wait_for(&gitrepos, "repo", WAIT, waiting)
        .await
        .unwrap_or_else(|e| panic!("not Ready before the first sync: {e}\n{}", log()));

    // What gitjob writes after a sync (server-side apply, its own field manager).
    let synced = serde_json::json!({
        "apiVersion": "fleet.cattle.io/v1alpha1", "kind": "GitRepo",
        "status": {"commit": "c0ffee", "conditions": [
            {"type": "Stalled", "status": "False"}, {"type": "Accepted", "status": "True"},
        ]},
    });
    gitrepos
        .patch_status(
            "repo",
            &PatchParams::apply("gitjob").force(),
            &Patch::Apply(synced),
        )
        .await
        .expect("gitjob's status");
    create::<Bundle>(
        &client,
        "metadata:\n  name: app\n  labels:\n    fleet.cattle.io/repo-name: repo\nspec:\n  resources:\n  - name: cm.yaml\n    content: 'kind: ConfigMap'\n  targets:\n  - clusterSelector:\n      matchLabels:\n        -env: prod\n",
    )
    .await;
    let untargetable = |g: &GitRepo| {
        gitrepo_ready(g).is_some_and(|(s, m)| {
            s == "False" && m.contains("Bundle app") && m.contains("invalid label key")
        })
    };
    let repo = wait_for(&gitrepos, "repo", WAIT, untargetable)
        .await
        .unwrap_or_else(|e| panic!("not Ready, naming the Bundle: {e}\n{}", log()));
    let types: Vec<String> = repo
        .status
        .map(|s| s.base.conditions.into_iter().map(|c| c.type_).collect())
        .unwrap_or_default();
    for kept in ["Stalled", "Accepted", "Ready"] {
        assert!(types.iter().any(|t| t == kept), "{kept} in {types:?}");
    }

    let bundles: Api<Bundle> = Api::namespaced(client.clone(), NS);
    let fixed = serde_json::json!({"spec": {"targets": [{"clusterName": "c1"}]}});
    bundles
        .patch("app", &PatchParams::default(), &Patch::Merge(fixed))
        .await
        .expect("fix the bundle");
    let bd = wait_for(&bds(&client, "c1"), "app", WAIT, |_| true)
        .await
        .unwrap_or_else(|e| panic!("deployed once fixed: {e}\n{}", log()));
    report_deployed(&client, &bd).await;
    wait_for(&gitrepos, "repo", WAIT, |g| {
        gitrepo_ready(g).is_some_and(|(s, _)| s == "True")
    })
    .await
    .unwrap_or_else(|e| panic!("Ready once deployed: {e}\n{}", log()));
}
