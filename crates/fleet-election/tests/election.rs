//! Leader election on a real control plane, with contenders as separate processes
//! (`fleet-election-contender`): one leader at a time, crash and graceful failover, an API
//! server made unreachable for the leader, and a leader frozen past its lease.
//!
//! Short timings (lease 3 s, renew deadline 2 s, retry 500 ms) keep the tests quick; the
//! invariants do not depend on them. Time bounds are not asserted here (the benchmark measures
//! them); the tests assert order: who acted when, relative to whom.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use fleet_election::trace::{TraceEvent, overlaps};
use fleet_testkit::process::{SIGCONT, SIGKILL, SIGSTOP};
use fleet_testkit::{ControlPlane, Lifetime, ManagedProcess, TcpProxy, eventually};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;

const LEASE: &str = "contended";
const WAIT: Duration = Duration::from_secs(30);

struct Contender {
    identity: String,
    process: ManagedProcess,
}

impl Contender {
    fn spawn(dir: &Path, kubeconfig: &Path, identity: &str) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_fleet-election-contender"));
        cmd.arg(format!("--kubeconfig={}", kubeconfig.display()))
            .arg(format!("--lease={LEASE}"))
            .arg(format!("--election-identity={identity}"))
            .args([
                "--election-lease-duration=3s",
                "--election-renew-deadline=2s",
            ])
            .args(["--election-retry-period=500ms", "--act-interval=20ms"])
            .env("RUST_LOG", "info");
        let log = dir.join(format!("{identity}.log"));
        let process =
            ManagedProcess::spawn(identity, cmd, &log, Lifetime::Owned).expect("spawn contender");
        Self {
            identity: identity.to_owned(),
            process,
        }
    }

    /// client-go's leader election (`e2e/tools/client-go-elector`), same timings, same Lease.
    fn spawn_client_go(dir: &Path, kubeconfig: &Path, identity: &str) -> Self {
        let binary =
            fleet_testkit::binaries::ensure(fleet_testkit::binaries::Tool::ClientGoElector)
                .unwrap_or_else(|e| panic!("{e}"));
        let mut cmd = Command::new(binary);
        cmd.arg(format!("--kubeconfig={}", kubeconfig.display()))
            .arg(format!("--lease={LEASE}"))
            .arg(format!("--identity={identity}"))
            .args([
                "--lease-duration=3s",
                "--renew-deadline=2s",
                "--retry-period=500ms",
            ]);
        let log = dir.join(format!("{identity}.log"));
        let process =
            ManagedProcess::spawn(identity, cmd, &log, Lifetime::Owned).expect("spawn client-go");
        Self {
            identity: identity.to_owned(),
            process,
        }
    }

    fn events(&self) -> Vec<TraceEvent> {
        fleet_election::trace::read_file(self.process.log_path())
    }

    /// Whether the last acquired/lost/released event is `acquired`.
    fn leading(&self) -> bool {
        fleet_election::trace::is_leading(&self.events())
    }

    async fn wait_event(&self, event: &str, after_ms: f64) -> TraceEvent {
        let what = format!("{} to report {event}", self.identity);
        eventually(&what, WAIT, Duration::from_millis(20), || async {
            self.events()
                .into_iter()
                .find(|e| e.event == event && e.ts_ms >= after_ms)
                .ok_or_else(|| self.process.log_tail(15))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn last_act_ms(&self) -> Option<f64> {
        self.events()
            .iter()
            .filter(|e| e.event == "act")
            .map(|e| e.ts_ms)
            .reduce(f64::max)
    }
}

fn all_events(contenders: &[&Contender]) -> Vec<TraceEvent> {
    contenders.iter().flat_map(|c| c.events()).collect()
}

fn now_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or_default()
}

async fn plane() -> (ControlPlane, PathBuf) {
    let plane = ControlPlane::builder()
        .controller_manager(false)
        .start()
        .await
        .unwrap_or_else(|e| panic!("control plane: {e}"));
    let kubeconfig = plane.kubeconfig_path().to_owned();
    (plane, kubeconfig)
}

async fn leader_of<'a>(contenders: &'a [&'a Contender]) -> &'a Contender {
    eventually(
        "one contender to lead",
        WAIT,
        Duration::from_millis(20),
        || async {
            let leading: Vec<_> = contenders.iter().filter(|c| c.leading()).collect();
            match leading.as_slice() {
                [one] => Ok(**one),
                _ => Err(format!("{} leaders", leading.len())),
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

async fn holder(plane: &ControlPlane) -> Option<String> {
    Api::<Lease>::namespaced(plane.client(), "default")
        .get_opt(LEASE)
        .await
        .expect("read Lease")
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
}

#[tokio::test]
async fn one_leader_among_three_and_a_crash_moves_leadership_after_expiry() {
    let (plane, kubeconfig) = plane().await;
    let dir = plane.dir().to_owned();
    let (a, b, c) = (
        Contender::spawn(&dir, &kubeconfig, "a"),
        Contender::spawn(&dir, &kubeconfig, "b"),
        Contender::spawn(&dir, &kubeconfig, "c"),
    );
    let all = [&a, &b, &c];
    let first = leader_of(&all).await;

    // At every observation for a few renew periods: exactly one leader, and the Lease says so.
    for _ in 0..30 {
        let leading: Vec<_> = all
            .iter()
            .filter(|c| c.leading())
            .map(|c| &c.identity)
            .collect();
        assert_eq!(leading, vec![&first.identity]);
        assert_eq!(holder(&plane).await.as_ref(), Some(&first.identity));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let killed_at = now_ms();
    first.process.signal(SIGKILL).expect("kill the leader");
    let others: Vec<&Contender> = all
        .iter()
        .copied()
        .filter(|c| c.identity != first.identity)
        .collect();
    let next = leader_of(&others).await;
    let acquired = next.wait_event("acquired", killed_at).await;
    let last_act = first.last_act_ms().expect("the first leader acted");
    assert!(
        acquired.ts_ms > last_act,
        "the new leader acquired after the old one's last act"
    );
    assert!(
        acquired.failover_ms.is_some_and(|ms| ms > 0.0),
        "failover measured from the previous holder's last renew: {acquired:?}"
    );
    assert_eq!(holder(&plane).await.as_ref(), Some(&next.identity));
    assert!(
        overlaps(&all_events(&all)).is_empty(),
        "no two replicas acted at once"
    );
}

#[tokio::test]
async fn graceful_release_hands_over_at_once() {
    let (plane, kubeconfig) = plane().await;
    let dir = plane.dir().to_owned();
    let a = Contender::spawn(&dir, &kubeconfig, "a");
    a.wait_event("acquired", 0.0).await;
    let mut b = Contender::spawn(&dir, &kubeconfig, "b");
    b.wait_event("ready", 0.0).await;
    let transitions_before = Api::<Lease>::namespaced(plane.client(), "default")
        .get(LEASE)
        .await
        .expect("Lease")
        .spec
        .and_then(|s| s.lease_transitions);

    let mut a = a;
    a.process.stop(Duration::from_secs(10));
    let released = a.wait_event("released", 0.0).await;
    a.wait_event("exited", 0.0).await;
    let acquired = b.wait_event("acquired", 0.0).await;
    assert!(acquired.ts_ms >= released.ts_ms);
    assert!(
        acquired.ts_ms - released.ts_ms < 3000.0,
        "taken through the watch, not after the 3 s lease expired ({} ms)",
        acquired.ts_ms - released.ts_ms
    );
    assert!(
        a.last_act_ms().expect("a acted") <= released.ts_ms,
        "a stopped acting before releasing"
    );
    let lease = Api::<Lease>::namespaced(plane.client(), "default")
        .get(LEASE)
        .await
        .expect("Lease")
        .spec
        .expect("spec");
    assert_eq!(lease.holder_identity.as_deref(), Some("b"));
    assert_eq!(lease.lease_transitions, transitions_before.map(|t| t + 1));
    assert!(overlaps(&all_events(&[&a, &b])).is_empty());
    b.process.stop(Duration::from_secs(10));
}

#[tokio::test]
async fn unreachable_api_server_stops_the_leader_before_anyone_takes_over() {
    let (plane, kubeconfig) = plane().await;
    let dir = plane.dir().to_owned();
    let proxy = TcpProxy::start(plane.api_addr().expect("addr"))
        .await
        .expect("proxy");
    let via_proxy = dir.join("via-proxy.kubeconfig");
    plane
        .write_kubeconfig_via(&format!("https://{}", proxy.addr()), &via_proxy)
        .expect("kubeconfig");
    let a = Contender::spawn(&dir, &via_proxy, "a");
    a.wait_event("acquired", 0.0).await;
    let b = Contender::spawn(&dir, &kubeconfig, "b");
    b.wait_event("ready", 0.0).await;

    let cut_at = now_ms();
    proxy.block();
    let lost = a.wait_event("lost", cut_at).await;
    let acquired = b.wait_event("acquired", cut_at).await;
    assert!(
        lost.detail
            .as_deref()
            .is_some_and(|d| d.contains("renew deadline")),
        "{lost:?}"
    );
    assert!(lost.ts_ms < acquired.ts_ms, "a stopped before b acquired");
    assert!(a.last_act_ms().expect("a acted") < acquired.ts_ms);

    // Healed: a sees b's claim, stays a standby in the same process, and leads again after b
    // leaves.
    proxy.unblock();
    a.wait_event("new_leader", cut_at).await;
    assert!(!a.leading());
    let mut b = b;
    let b_left = now_ms();
    b.process.stop(Duration::from_secs(10));
    let again = a.wait_event("acquired", b_left).await;
    assert_eq!(again.term, Some(2), "second term of the same process");
    assert!(overlaps(&all_events(&[&a, &b])).is_empty());
}

#[tokio::test]
async fn a_frozen_leader_does_not_act_after_resuming() {
    let (plane, kubeconfig) = plane().await;
    let dir = plane.dir().to_owned();
    let a = Contender::spawn(&dir, &kubeconfig, "a");
    a.wait_event("acquired", 0.0).await;
    let b = Contender::spawn(&dir, &kubeconfig, "b");
    b.wait_event("ready", 0.0).await;

    let frozen_at = now_ms();
    a.process.signal(SIGSTOP).expect("SIGSTOP");
    let acquired = b.wait_event("acquired", frozen_at).await;
    let resumed_at = now_ms();
    a.process.signal(SIGCONT).expect("SIGCONT");
    a.wait_event("lost", resumed_at).await;
    let late_acts: Vec<_> = a
        .events()
        .into_iter()
        .filter(|e| e.event == "act" && e.ts_ms >= acquired.ts_ms)
        .collect();
    assert!(
        late_acts.is_empty(),
        "a acted after b acquired: {late_acts:?}"
    );
    assert_eq!(
        holder(&plane).await.as_deref(),
        Some("b"),
        "a wrote nothing to the Lease"
    );
    assert!(b.leading());
    assert!(overlaps(&all_events(&[&a, &b])).is_empty());
}

#[tokio::test]
async fn client_go_and_fleet_election_respect_each_other_on_one_lease() {
    let (plane, kubeconfig) = plane().await;
    let dir = plane.dir().to_owned();
    let go = Contender::spawn_client_go(&dir, &kubeconfig, "client-go-1");
    go.wait_event("acquired", 0.0).await;
    let rust = Contender::spawn(&dir, &kubeconfig, "fleet-rs");
    let seen = rust.wait_event("new_leader", 0.0).await;
    assert_eq!(
        seen.detail.as_deref(),
        Some("client-go-1"),
        "ours reads client-go's record"
    );
    // Several lease durations: ours never takes a live client-go leader's Lease.
    for _ in 0..40 {
        assert!(!rust.leading());
        assert_eq!(holder(&plane).await.as_deref(), Some("client-go-1"));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // client-go's ReleaseOnCancel release is taken at once.
    let mut go = go;
    go.process.stop(Duration::from_secs(10));
    let released = go.wait_event("released", 0.0).await;
    let acquired = rust.wait_event("acquired", 0.0).await;
    assert!(acquired.ts_ms >= released.ts_ms);
    assert!(
        acquired.ts_ms - released.ts_ms < 3000.0,
        "taken through the watch, not after expiry ({} ms)",
        acquired.ts_ms - released.ts_ms
    );

    // A new client-go contender respects our record...
    let go2 = Contender::spawn_client_go(&dir, &kubeconfig, "client-go-2");
    let seen = go2.wait_event("new_leader", 0.0).await;
    assert_eq!(
        seen.detail.as_deref(),
        Some("fleet-rs"),
        "client-go reads our record"
    );
    for _ in 0..40 {
        assert!(!go2.leading());
        assert_eq!(holder(&plane).await.as_deref(), Some("fleet-rs"));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // ...and takes over when our leader dies without releasing.
    let killed_at = now_ms();
    rust.process.signal(SIGKILL).expect("kill");
    go2.wait_event("acquired", killed_at).await;
    assert_eq!(holder(&plane).await.as_deref(), Some("client-go-2"));
    assert!(
        overlaps(&all_events(&[&go, &rust, &go2])).is_empty(),
        "never both acting"
    );
}
