//! fleet-controller on a real control plane: targeting creates and removes
//! BundleDeployments, status rolls up (Bundles, Clusters, ClusterGroups, GitRepos, HelmOps),
//! registration issues credentials limited to the cluster's own namespace, and a killed
//! leader hands over. Rollouts and BundleNamespaceMappings: `tests/rollout.rs`.

mod support;

use fleet_api::naming::cluster_namespace;
use fleet_api::{
    Bundle, BundleDeployment, Cluster, ClusterGroup, ClusterRegistration, ClusterRegistrationToken,
    GitRepo,
};
use fleet_testkit::{wait_deleted, wait_for};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
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
    for (name, env) in [("c1", "dev"), ("c2", "prod")] {
        create::<Cluster>(
            &client,
            &format!("metadata:\n  name: {name}\n  labels:\n    env: {env}\nspec: {{}}\n"),
        )
        .await;
    }
    create::<ClusterGroup>(
        &client,
        "metadata:\n  name: prod\nspec:\n  selector:\n    matchLabels:\n      env: prod\n",
    )
    .await;
    create::<GitRepo>(
        &client,
        "metadata:\n  name: repo\nspec:\n  repo: https://example.com/repo\n",
    )
    .await;
    create::<Bundle>(
        &client,
        "metadata:\n  name: app\n  labels:\n    fleet.cattle.io/repo-name: repo\nspec:\n  helm:\n    values:\n      where: ${ .ClusterName }\n  resources:\n  - name: cm.yaml\n    content: 'kind: ConfigMap'\n  targets:\n  - name: prod\n    clusterGroup: prod\n",
    )
    .await;

    let bd = wait_for(&bds(&client, "c2"), "app", WAIT, |_| true)
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
        bds(&client, "c1")
            .get_opt("app")
            .await
            .expect("get")
            .is_none(),
        "dev cluster not targeted"
    );

    // Retargeting: c1 joins the group, c2 leaves it.
    label_cluster(&client, "c1", Some("prod")).await;
    wait_for(&bds(&client, "c1"), "app", WAIT, |_| true)
        .await
        .expect("c1 targeted");
    label_cluster(&client, "c2", None).await;
    wait_deleted(&bds(&client, "c2"), "app", WAIT)
        .await
        .expect("c2 untargeted");

    // The agent reports: the roll-up follows.
    let bundles: Api<Bundle> = Api::namespaced(client.clone(), NS);
    wait_for(&bundles, "app", WAIT, |b| {
        b.status
            .as_ref()
            .is_some_and(|s| s.summary.desired_ready == 1 && s.summary.wait_applied == 1)
    })
    .await
    .expect("bundle waits for the agent");
    let bd = bds(&client, "c1").get("app").await.expect("bd");
    report_deployed(&client, &bd).await;
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

    // A HelmOp's Bundle: the HelmOp rolls up too; the Cluster counts ready repos and ops.
    create::<fleet_api::HelmOp>(&client, "metadata:\n  name: chart\nspec: {}\n").await;
    create::<Bundle>(
        &client,
        "metadata:\n  name: chart\n  labels:\n    fleet.cattle.io/fleet-helm-name: chart\nspec:\n  resources:\n  - name: cm.yaml\n    content: 'kind: ConfigMap'\n  targets:\n  - clusterGroup: prod\n",
    )
    .await;
    let bd = wait_for(&bds(&client, "c1"), "chart", WAIT, |_| true)
        .await
        .expect("helmop bundle deployed");
    report_deployed(&client, &bd).await;
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

    // Idle: once the roll-ups have settled (no write for a polling interval), a resync
    // writes nothing.
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

    // Deleting the Bundle deletes its BundleDeployments first.
    bundles
        .delete("app", &Default::default())
        .await
        .expect("delete");
    wait_deleted(&bds(&client, "c1"), "app", WAIT)
        .await
        .expect("bd deleted");
    wait_deleted(&bundles, "app", WAIT)
        .await
        .expect("bundle gone");
}

fn secret_value(secret: &Secret, key: &str) -> String {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|v| String::from_utf8_lossy(&v.0).into_owned())
        .unwrap_or_default()
}

async fn register(
    plane: &fleet_testkit::ControlPlane,
    import: &Client,
    client_id: &str,
) -> (String, Client) {
    let registration: ClusterRegistration = yaml(&format!(
        "metadata:\n  name: reg-{client_id}\nspec:\n  clientID: {client_id}\n  clientRandom: r4nd0m\n  clusterLabels:\n    site: {client_id}\n"
    ));
    Api::<ClusterRegistration>::namespaced(import.clone(), NS)
        .create(&PostParams::default(), &registration)
        .await
        .expect("the import token may register");
    let granted = wait_for(
        &Api::<ClusterRegistration>::namespaced(plane.client(), NS),
        &format!("reg-{client_id}"),
        WAIT,
        |r| r.status.as_ref().is_some_and(|s| s.granted),
    )
    .await
    .expect("granted");
    let cluster = granted
        .status
        .and_then(|s| s.cluster_name)
        .unwrap_or_default();
    let secret_name = fleet_api::registration_protocol::credentials_secret(client_id, "r4nd0m");
    let secret = Api::<Secret>::namespaced(
        import.clone(),
        fleet_api::registration_protocol::REGISTRATION_NAMESPACE,
    )
    .get(&secret_name)
    .await
    .expect("the agent reads its credentials by name");
    assert_eq!(secret_value(&secret, "clusterName"), cluster);
    let agent = plane
        .token_client(&secret_value(&secret, "token"))
        .await
        .expect("agent client");
    (cluster, agent)
}

/// The rules an identity has in `namespace` (SelfSubjectRulesReview), as
/// `group/resource[/name]: verbs`, without what every authenticated user may do.
async fn agent_rules(client: &Client, namespace: &str) -> Vec<String> {
    use k8s_openapi::api::authorization::v1::{SelfSubjectRulesReview, SelfSubjectRulesReviewSpec};
    let review = SelfSubjectRulesReview {
        spec: SelfSubjectRulesReviewSpec {
            namespace: Some(namespace.to_owned()),
        },
        ..Default::default()
    };
    let review = Api::<SelfSubjectRulesReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .expect("rules review");
    let mut rules = Vec::new();
    for rule in review.status.map(|s| s.resource_rules).unwrap_or_default() {
        let groups = rule.api_groups.unwrap_or_default();
        if groups.iter().any(|g| {
            g.starts_with("authorization.k8s.io") || g.starts_with("authentication.k8s.io")
        }) {
            continue;
        }
        let mut verbs = rule.verbs.clone();
        verbs.sort();
        for group in &groups {
            for resource in rule.resources.clone().unwrap_or_default() {
                let names = rule.resource_names.clone().unwrap_or_default();
                let targets = if names.is_empty() {
                    vec![format!("{group}/{resource}")]
                } else {
                    names
                        .iter()
                        .map(|n| format!("{group}/{resource}/{n}"))
                        .collect()
                };
                rules.extend(
                    targets
                        .into_iter()
                        .map(|t| format!("{t}: {}", verbs.join(" "))),
                );
            }
        }
    }
    rules.sort();
    rules.dedup();
    rules
}

fn allowed(rules: &[&str], cluster: &str) -> Vec<String> {
    let mut rules: Vec<String> = rules.iter().map(|r| r.replace("{c}", cluster)).collect();
    rules.sort();
    rules
}

fn forbidden<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> bool {
    matches!(result, Err(kube::Error::Api(s)) if s.code == 403)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_issues_credentials_for_the_own_cluster_namespace_only() {
    let plane = plane().await;
    let client = plane.client();
    let work = tempfile::tempdir().expect("tempdir");
    let controller = Controller::start(&plane, "controller-0", work.path());
    create::<ClusterRegistrationToken>(&client, "metadata:\n  name: token\nspec:\n  ttl: 1h\n")
        .await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    let values_secret = wait_for(&secrets, "token", WAIT, |_| true)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", controller.process.log_tail(40)));
    let values = fleet_controller::registration::token_values(&values_secret).expect("values");
    assert_eq!(values.api_server_url.as_deref(), Some(plane.server()));
    let import = plane
        .token_client(&values.token)
        .await
        .expect("import client");
    assert!(
        forbidden(
            Api::<Secret>::namespaced(import.clone(), NS)
                .list(&ListParams::default())
                .await
        ),
        "the import token lists no secrets"
    );

    let (c1, agent1) = register(&plane, &import, "client-one").await;
    let (c2, _agent2) = register(&plane, &import, "client-two").await;
    let cluster: Cluster = Api::namespaced(client.clone(), NS)
        .get(&c1)
        .await
        .expect("cluster created");
    assert_eq!(
        cluster.labels().get("site").map(String::as_str),
        Some("client-one")
    );

    let own: Api<BundleDeployment> = Api::namespaced(agent1.clone(), &cluster_namespace(NS, &c1));
    own.list(&ListParams::default())
        .await
        .expect("the agent reads its own cluster namespace");
    let other: Api<BundleDeployment> = Api::namespaced(agent1.clone(), &cluster_namespace(NS, &c2));
    assert!(
        forbidden(other.list(&ListParams::default()).await),
        "and not another cluster's (403)"
    );
    let clusters: Api<Cluster> = Api::namespaced(agent1.clone(), NS);
    let seen =
        serde_json::json!({"status": {"agent": {"lastSeen": jiff::Timestamp::now().to_string()}}});
    clusters
        .patch_status(&c1, &PatchParams::default(), &Patch::Merge(seen.clone()))
        .await
        .expect("the agent reports on its own Cluster");
    assert!(
        forbidden(
            clusters
                .patch_status(&c2, &PatchParams::default(), &Patch::Merge(seen))
                .await
        ),
        "not on another"
    );
    // Its labels choose what it receives: the agent may not change them.
    assert!(
        forbidden(
            clusters
                .patch(
                    &c1,
                    &PatchParams::default(),
                    &Patch::Merge(serde_json::json!({"metadata": {"labels": {"env": "prod"}}})),
                )
                .await
        ),
        "the agent cannot relabel its own Cluster"
    );
    // Everything the agent identity may do, against an explicit allow-list.
    let own_ns = cluster_namespace(NS, &c1);
    assert_eq!(
        agent_rules(&agent1, NS).await,
        allowed(
            &[
                "fleet.cattle.io/clusters/{c}: get",
                "fleet.cattle.io/clusters/status/{c}: get patch update",
                "fleet.cattle.io/contents: get",
            ],
            &c1
        )
    );
    assert_eq!(
        agent_rules(&agent1, &own_ns).await,
        allowed(
            &[
                "/secrets: get list watch",
                "events.k8s.io/events: create",
                "fleet.cattle.io/bundledeployments: get list patch update watch",
                "fleet.cattle.io/bundledeployments/status: get patch update",
                "fleet.cattle.io/contents: get",
            ],
            &c1
        )
    );

    // An expiring token: deleted with its identity when due; its token stops working.
    create::<ClusterRegistrationToken>(&client, "metadata:\n  name: short\nspec:\n  ttl: 3s\n")
        .await;
    let short = wait_for(&secrets, "short", WAIT, |_| true)
        .await
        .expect("short token values");
    let short_values = fleet_controller::registration::token_values(&short).expect("values");
    let short_import = plane
        .token_client(&short_values.token)
        .await
        .expect("client");
    wait_deleted(
        &Api::<ClusterRegistrationToken>::namespaced(client.clone(), NS),
        "short",
        WAIT,
    )
    .await
    .expect("expired token deleted");
    fleet_testkit::eventually(
        "the expired import token is refused",
        WAIT,
        std::time::Duration::from_millis(200),
        || async {
            let registration: ClusterRegistration =
                yaml("metadata:\n  name: late\nspec:\n  clientID: late\n  clientRandom: x\n");
            match Api::<ClusterRegistration>::namespaced(short_import.clone(), NS)
                .create(&PostParams::default(), &registration)
                .await
            {
                Err(kube::Error::Api(s)) if s.code == 401 => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await
    .expect("401");
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
