//! kube-runtime controllers that run only while leading, on caches kept warm by standbys,
//! against a real control plane: two replicas in one process, each with its own elector.

use std::collections::BTreeMap;
use std::future::ready;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use fleet_election::{
    ElectionConfig, ElectionMetrics, Elector, Leadership, Timings, WarmCache, run_while_leading,
};
use fleet_testkit::{ControlPlane, eventually};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const NS: &str = "warm";
const ANNOTATION: &str = "test.fleet-rs.io/reconciled-by";

struct Replica {
    identity: String,
    reconciles: Arc<AtomicUsize>,
    cache: Arc<WarmCache<ConfigMap>>,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

struct Ctx {
    identity: String,
    leadership: Leadership,
    api: Api<ConfigMap>,
    reconciles: Arc<AtomicUsize>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct ReconcileError(String);

async fn reconcile(map: Arc<ConfigMap>, ctx: Arc<Ctx>) -> Result<Action, ReconcileError> {
    ctx.reconciles.fetch_add(1, Ordering::SeqCst);
    if !ctx.leadership.still_leading() {
        return Ok(Action::await_change());
    }
    let patch = serde_json::json!({"metadata": {"annotations": {ANNOTATION: ctx.identity}}});
    ctx.api
        .patch(
            &map.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .map_err(|e| ReconcileError(e.to_string()))?;
    Ok(Action::await_change())
}

fn start_replica(client: &Client, identity: &str) -> Replica {
    let timings = Timings {
        lease_duration: Duration::from_secs(3),
        renew_deadline: Duration::from_secs(2),
        retry_period: Duration::from_millis(500),
    };
    let config = ElectionConfig::new("warm-controllers", "default", identity, timings)
        .expect("valid config");
    let elector = Elector::new(client.clone(), config, ElectionMetrics::default()).spawn();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    let cache = Arc::new(WarmCache::spawn(api.clone(), watcher::Config::default()));
    let reconciles = Arc::new(AtomicUsize::new(0));
    let shutdown = CancellationToken::new();
    let task = {
        let (cache, reconciles, identity) =
            (cache.clone(), reconciles.clone(), identity.to_owned());
        tokio::spawn(run_while_leading(
            elector,
            shutdown.clone(),
            move |leadership| {
                let ctx = Arc::new(Ctx {
                    identity: identity.clone(),
                    leadership: leadership.clone(),
                    api: api.clone(),
                    reconciles: reconciles.clone(),
                });
                let cache = cache.clone();
                async move {
                    cache
                        .controller()
                        .await
                        .graceful_shutdown_on(leadership.stopped())
                        .run(
                            reconcile,
                            |_, _, _| Action::requeue(Duration::from_secs(1)),
                            ctx,
                        )
                        .for_each(|_| ready(()))
                        .await;
                }
            },
        ))
    };
    Replica {
        identity: identity.to_owned(),
        reconciles,
        cache,
        shutdown,
        task,
    }
}

async fn create_map(api: &Api<ConfigMap>, name: &str) {
    let map = ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([("k".to_owned(), "v".to_owned())])),
        ..Default::default()
    };
    api.create(&PostParams::default(), &map)
        .await
        .expect("create ConfigMap");
}

async fn all_annotated_by(api: &Api<ConfigMap>, identity: &str, count: usize) {
    let what = format!("{count} ConfigMaps reconciled by {identity}");
    eventually(
        &what,
        Duration::from_secs(30),
        Duration::from_millis(50),
        || async {
            let maps = api
                .list(&Default::default())
                .await
                .map_err(|e| e.to_string())?;
            let by: Vec<_> = maps
                .items
                .iter()
                .map(|m| m.annotations().get(ANNOTATION).cloned().unwrap_or_default())
                .collect();
            if by.len() == count && by.iter().all(|b| b == identity) {
                Ok(())
            } else {
                Err(format!("{by:?}"))
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn only_the_leader_reconciles_and_a_new_leader_catches_up_from_its_warm_cache() {
    let plane = ControlPlane::builder()
        .controller_manager(false)
        .start()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let client = plane.client();
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(NS.to_owned()),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .expect("namespace");
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    for name in ["one", "two", "three"] {
        create_map(&maps, name).await;
    }

    let a = start_replica(&client, "a");
    all_annotated_by(&maps, "a", 3).await;
    let b = start_replica(&client, "b");
    b.cache.wait_until_ready().await;
    create_map(&maps, "four").await;
    all_annotated_by(&maps, "a", 4).await;
    eventually(
        "b's standby cache to hold all four",
        Duration::from_secs(10),
        Duration::from_millis(20),
        || async {
            let cached = b.cache.reader().state().len();
            if cached == 4 {
                Ok(())
            } else {
                Err(format!("{cached} cached"))
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        b.reconciles.load(Ordering::SeqCst),
        0,
        "a standby never reconciles"
    );

    // Graceful hand-over: a stops its controller and releases; b starts from its cache.
    a.shutdown.cancel();
    a.task.await.expect("a ends");
    let a_reconciles = a.reconciles.load(Ordering::SeqCst);
    all_annotated_by(&maps, "b", 4).await;
    create_map(&maps, "five").await;
    all_annotated_by(&maps, "b", 5).await;
    assert!(b.reconciles.load(Ordering::SeqCst) >= 5);
    assert_eq!(
        a.reconciles.load(Ordering::SeqCst),
        a_reconciles,
        "a stopped for good"
    );
    assert_eq!(b.identity, "b");
    b.shutdown.cancel();
    b.task.await.expect("b ends");
}
