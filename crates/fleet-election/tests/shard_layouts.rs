//! One shard layout at a time, on a real control plane: replicas started with another shard
//! count (as during a rolling update that changes `--shards`), and a single leader on the same
//! base Lease, hold nothing while the running layout has a live replica, and take over once
//! its last replica is gone and the layout's Lease has run out. A sampler checks, on one
//! clock, that no two layouts (or a layout and the single leader) ever lead at once.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fleet_election::shards::{ShardConfig, ShardMetrics, ShardSet, layout_identity};
use fleet_election::{ElectionConfig, ElectionMetrics, Elector, ElectorHandle, Role, Timings};
use fleet_testkit::{ControlPlane, eventually};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use tokio_util::sync::CancellationToken;

const NS: &str = "default";
const BASE: &str = "layouts";
const WAIT: Duration = Duration::from_secs(30);

fn timings() -> Timings {
    Timings {
        lease_duration: Duration::from_secs(3),
        renew_deadline: Duration::from_secs(2),
        retry_period: Duration::from_millis(500),
    }
}

/// One replica of a layout, running until its token fires.
struct Replica {
    set: ShardSet,
    stop: CancellationToken,
    done: tokio::task::JoinHandle<()>,
}

impl Replica {
    fn start(client: &kube::Client, identity: &str, shards: u32) -> Self {
        let stop = CancellationToken::new();
        let config = ShardConfig {
            base: BASE.to_owned(),
            namespace: NS.to_owned(),
            identity: identity.to_owned(),
            zone: String::new(),
            shards,
            timings: timings(),
        };
        let (set, done) = ShardSet::spawn(
            client.clone(),
            config,
            ElectionMetrics::default(),
            ShardMetrics::default(),
            stop.clone(),
        );
        Self { set, stop, done }
    }

    /// Shuts down as on SIGTERM: every shard released, the member Lease deleted.
    async fn shut_down(self) {
        self.stop.cancel();
        self.done.await.expect("shard set task");
    }
}

/// Waits until `replicas` hold all `shards` shards between them.
async fn hold_all(what: &str, replicas: &[&ShardSet], shards: u32) {
    eventually(what, WAIT, Duration::from_millis(50), || {
        let held: BTreeSet<u32> = replicas.iter().flat_map(|r| r.held()).collect();
        async move {
            if held.len() == shards as usize {
                Ok(())
            } else {
                Err(format!("held: {held:?}"))
            }
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

/// The holder of the base Lease.
async fn layout_holder(leases: &Api<Lease>) -> String {
    leases
        .get(BASE)
        .await
        .ok()
        .and_then(|l| l.spec?.holder_identity)
        .unwrap_or_default()
}

/// Who leads, sampled every 10 ms until stopped: a layout's replicas (by shard count) and the
/// single leader. Two at once is a violation, recorded with the time into the test.
#[derive(Default)]
struct Sampler {
    layouts: Mutex<Vec<(u32, ShardSet)>>,
    single: Mutex<Option<tokio::sync::watch::Receiver<Role>>>,
    violations: Mutex<Vec<String>>,
}

impl Sampler {
    fn leading_now(&self) -> BTreeSet<String> {
        let mut leading: BTreeSet<String> = self
            .layouts
            .lock()
            .expect("sampler")
            .iter()
            .filter(|(_, set)| !set.held().is_empty())
            .map(|(shards, _)| layout_identity(*shards))
            .collect();
        if let Some(single) = &*self.single.lock().expect("sampler")
            && matches!(&*single.borrow(), Role::Leading(term) if term.still_leading())
        {
            leading.insert("single leader".to_owned());
        }
        leading
    }

    async fn run(self: Arc<Self>, stop: CancellationToken) {
        let start = tokio::time::Instant::now();
        while !stop.is_cancelled() {
            let leading = self.leading_now();
            if leading.len() > 1 {
                self.violations
                    .lock()
                    .expect("sampler")
                    .push(format!("{:?} into the test: {leading:?}", start.elapsed()));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn single_leader(client: &kube::Client) -> ElectorHandle {
    let config = ElectionConfig::new(BASE, NS, "single", timings()).expect("valid election");
    Elector::new(client.clone(), config, ElectionMetrics::default()).spawn()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_shard_layout_waits_until_the_old_one_is_gone() {
    let plane = ControlPlane::builder()
        .controller_manager(false)
        .start()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let client = plane.client();
    let leases: Api<Lease> = Api::namespaced(client.clone(), NS);
    let sampler = Arc::new(Sampler::default());
    let sampling = CancellationToken::new();
    let sampled = tokio::spawn(sampler.clone().run(sampling.clone()));

    // Two replicas with 4 shards take them all and hold the layout's Lease together.
    let a0 = Replica::start(&client, "a0", 4);
    let a1 = Replica::start(&client, "a1", 4);
    sampler
        .layouts
        .lock()
        .expect("sampler")
        .extend([(4, a0.set.clone()), (4, a1.set.clone())]);
    hold_all("4 shards held by a0 and a1", &[&a0.set, &a1.set], 4).await;
    assert_eq!(layout_holder(&leases).await, "4-shards");

    // A replica with 6 shards, and a single leader on the same base Lease, take nothing
    // while the 4-shard layout has a replica, however long they wait.
    let b0 = Replica::start(&client, "b0", 6);
    sampler
        .layouts
        .lock()
        .expect("sampler")
        .push((6, b0.set.clone()));
    let single = single_leader(&client);
    *sampler.single.lock().expect("sampler") = Some(single.roles());
    tokio::time::sleep(timings().lease_duration * 2).await;
    assert!(b0.set.held().is_empty(), "b0 holds {:?}", b0.set.held());
    assert!(!b0.set.layout_held());
    assert!(matches!(single.role(), Role::Standby { .. }));
    assert_eq!(
        a0.set.owners().values().collect::<BTreeSet<_>>(),
        BTreeSet::from([&"a0".to_owned(), &"a1".to_owned()]),
        "the 6-shard replica is not a member of the 4-shard layout"
    );

    // a0 leaves: a1 takes its shards; the new layout still waits for a1.
    a0.shut_down().await;
    hold_all("4 shards held by a1 alone", &[&a1.set], 4).await;
    assert!(b0.set.held().is_empty());
    assert!(matches!(single.role(), Role::Standby { .. }));
    // (Both would contend for the layout once a1 is gone; the rolling update has one new
    // layout.)
    single.release().await;

    // The last replica of 4 shards leaves: once the layout's Lease runs out (it is not
    // released: the others might still hold it), the 6-shard replica takes every shard.
    a1.shut_down().await;
    hold_all("6 shards held by b0", &[&b0.set], 6).await;
    assert_eq!(layout_holder(&leases).await, "6-shards");

    // And from the last sharded replica to a single leader, which waits until then.
    let mut single = single_leader(&client);
    *sampler.single.lock().expect("sampler") = Some(single.roles());
    tokio::time::sleep(timings().lease_duration * 2).await;
    assert!(matches!(single.role(), Role::Standby { .. }));
    b0.shut_down().await;
    tokio::time::timeout(WAIT, single.leading())
        .await
        .expect("the single leader takes over")
        .expect("elector running");
    assert_eq!(layout_holder(&leases).await, "single");

    sampling.cancel();
    sampled.await.expect("sampler");
    let violations = sampler.violations.lock().expect("sampler").clone();
    assert!(
        violations.is_empty(),
        "two layouts led at once: {violations:?}"
    );
    single.release().await;
}
