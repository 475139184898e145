//! Registration: a ClusterRegistration gets credentials for its Cluster's own namespace
//! only.

use fleet_api::naming::cluster_namespace;
use fleet_api::{BundleDeployment, Cluster, ClusterRegistration, ClusterRegistrationToken};
use fleet_testkit::{wait_deleted, wait_for};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};

use crate::support::*;

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
