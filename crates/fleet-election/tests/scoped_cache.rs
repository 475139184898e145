//! A warm cache scoped to dynamic shards, against a real control plane: objects labelled with
//! a shard are kept while that shard is held here; objects not labelled yet, with the key
//! they are sharded by, only while their shard is held here, so a burst of new objects is
//! not in every replica's memory at once.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use fleet_api::sharding::ShardLabel;
use fleet_election::shards::assign::shard_of;
use fleet_election::{Scope, WarmCache};
use fleet_testkit::{ControlPlane, eventually};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use tokio::sync::watch;

const NS: &str = "scoped";
const LABEL: ShardLabel = ShardLabel {
    key: "test.fleet-rs.io/shard",
    shards: 4,
};
const MAPS: usize = 16;
const WAIT: Duration = Duration::from_secs(30);

/// The key a ConfigMap is sharded by before it is labelled.
fn key_of(metadata: &ObjectMeta) -> String {
    format!(
        "{}/{}",
        metadata.namespace.as_deref().unwrap_or_default(),
        metadata.name.as_deref().unwrap_or_default()
    )
}

fn shard_of_map(name: &str) -> u32 {
    shard_of(&format!("{NS}/{name}"), LABEL.shards)
}

/// The names of the ConfigMaps (`map-0` ..) whose hashed shard is in `held`.
fn of_shards(held: &[u32]) -> BTreeSet<String> {
    (0..MAPS)
        .map(|i| format!("map-{i}"))
        .filter(|name| held.contains(&shard_of_map(name)))
        .collect()
}

async fn cached_are(cache: &WarmCache<ConfigMap>, want: &BTreeSet<String>) {
    let what = format!("the cache holds {want:?}");
    eventually(&what, WAIT, Duration::from_millis(50), || async {
        let cached: BTreeSet<String> = cache
            .reader()
            .state()
            .iter()
            .map(|map| map.name_any())
            .collect();
        if &cached == want {
            Ok(())
        } else {
            Err(format!("cached: {cached:?}"))
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

async fn label(api: &Api<ConfigMap>, name: &str, shard: u32) {
    let patch = serde_json::json!({"metadata": {"labels": {LABEL.key: LABEL.value(shard)}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("label a ConfigMap");
}

/// The namespace and its ConfigMaps `map-0` .. (none labelled with a shard).
async fn seed(client: &kube::Client) -> Api<ConfigMap> {
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(NS.to_owned()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .expect("namespace");
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    for i in 0..MAPS {
        let map = ConfigMap {
            metadata: ObjectMeta {
                name: Some(format!("map-{i}")),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([("k".to_owned(), "v".to_owned())])),
            ..ConfigMap::default()
        };
        api.create(&PostParams::default(), &map)
            .await
            .expect("create ConfigMap");
    }
    api
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_not_labelled_yet_are_kept_only_while_their_shard_is_held() {
    let plane = ControlPlane::builder()
        .controller_manager(false)
        .start()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let api = seed(&plane.client()).await;
    // The test needs ConfigMaps of at least three shards.
    let shards: BTreeSet<u32> = (0..MAPS)
        .map(|i| shard_of_map(&format!("map-{i}")))
        .collect();
    assert!(shards.len() >= 3, "shards of the ConfigMaps: {shards:?}");
    let shards: Vec<u32> = shards.into_iter().collect();
    let (first, second, third) = (shards[0], shards[1], shards[2]);

    let (held, held_here) = watch::channel(BTreeSet::from([first]));
    let scope = Scope {
        label: LABEL,
        held: held_here,
        unlabelled_key: Some(key_of),
    };
    let cache = WarmCache::spawn_scoped(api.clone(), watcher::Config::default(), scope, |_| {});
    cached_are(&cache, &of_shards(&[first])).await;

    // A shard taken: its objects not labelled yet are listed, and it is covered once they are.
    held.send_replace(BTreeSet::from([first, second]));
    cached_are(&cache, &of_shards(&[first, second])).await;
    let coverage = cache.coverage();
    eventually(
        "the second shard covered",
        WAIT,
        Duration::from_millis(50),
        || {
            let covered = coverage.covers(second);
            async move {
                if covered {
                    Ok(())
                } else {
                    Err("not covered".to_owned())
                }
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));

    // A shard released: its objects leave.
    held.send_replace(BTreeSet::from([second]));
    cached_are(&cache, &of_shards(&[second])).await;

    // Labelled into a shard not held, an object leaves; labelled into a held one, an object
    // of a shard not held arrives.
    let leaving = of_shards(&[second])
        .into_iter()
        .next()
        .expect("a map of the second");
    let arriving = of_shards(&[third])
        .into_iter()
        .next()
        .expect("a map of the third");
    label(&api, &leaving, third).await;
    label(&api, &arriving, second).await;
    let mut want = of_shards(&[second]);
    want.remove(&leaving);
    want.insert(arriving);
    cached_are(&cache, &want).await;
}
