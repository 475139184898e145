//! Dynamic shards on a real control plane with real git: gitjob replicas with `--shards 6`
//! spread the shard Leases among themselves; every GitRepo is written by exactly one replica
//! (counted: each commit of each GitRepo is one Bundle write, across all replicas), a joining
//! replica takes its share, a SIGKILLed one's shards move to the others, and a replica frozen
//! (SIGSTOP) past its lease writes nothing when it resumes.

mod support;

use std::time::{Duration, Instant};

use fleet_testkit::eventually;
use fleet_testkit::git::GitRepoFixture;
use fleet_testkit::process::{SIGCONT, SIGSTOP};
use kube::api::PostParams;
use support::*;

const SHARDS: u32 = 6;
const REPOS: usize = 12;

fn replica(plane: &fleet_testkit::ControlPlane, name: &str, dir: &std::path::Path) -> Gitjob {
    Gitjob::start_with(plane, name, dir, &["--shards=6"])
}

/// Waits until `replicas` hold every shard between them, each shard once, each replica at
/// least one; returns how long that took.
async fn wait_covered(replicas: &[&Gitjob]) -> Duration {
    let started = Instant::now();
    let ports: Vec<u16> = replicas.iter().map(|r| r.admin_port).collect();
    // Lease 3 s: a machine loaded enough to starve renewals makes shards move for a while.
    fleet_testkit::wait_shards_covered(&ports, SHARDS, 2 * WAIT)
        .await
        .unwrap_or_else(|e| {
            let logs: Vec<String> = replicas.iter().map(|r| r.process.log_tail(15)).collect();
            panic!("{e}\n{}", logs.join("\n---\n"))
        });
    started.elapsed()
}

async fn writes(replicas: &[&Gitjob]) -> f64 {
    let mut total = 0.0;
    for replica in replicas {
        total += replica.metric("gitjob_bundle_writes_total").await;
    }
    total
}

/// Waits until every GitRepo's Bundle is at `commit`.
/// The objects the replicas count in the shards they hold (`fleet_shard_objects`), summed.
async fn shard_objects(replicas: &[&Gitjob]) -> f64 {
    let mut total = 0.0;
    for replica in replicas {
        for shard in 0..SHARDS {
            let lease = format!("fleet-gitops-leader-election-shard-{shard}-of-{SHARDS}");
            total += replica
                .metric(&format!("fleet_shard_objects{{lease=\"{lease}\"}}"))
                .await;
        }
    }
    total
}

async fn all_at(client: &kube::Client, commit: &str) {
    let bundles = bundles(client);
    eventually(
        "every Bundle at the commit",
        WAIT,
        Duration::from_millis(200),
        || async {
            let list = bundles
                .list(&Default::default())
                .await
                .map_err(|e| e.to_string())?;
            let at = list
                .items
                .iter()
                .filter(|b| commit_of(b) == Some(commit))
                .count();
            if at == REPOS {
                Ok(())
            } else {
                Err(format!("{at}/{REPOS} at {commit}"))
            }
        },
    )
    .await
    .expect("all synced");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_spread_over_replicas_and_every_gitrepo_has_one_writer() {
    let plane = plane().await;
    let client = plane.client();
    let work = tempfile::tempdir().expect("tempdir");
    let repo = GitRepoFixture::new().expect("git repo");
    let first = repo
        .commit_files("one", &[("cm.yaml", &configmap("one"))])
        .expect("commit");
    let a = replica(&plane, "a", work.path());
    let b = replica(&plane, "b", work.path());
    let mut c = replica(&plane, "c", work.path());
    wait_covered(&[&a, &b, &c]).await;
    let api = gitrepos(&client);
    for i in 0..REPOS {
        api.create(
            &PostParams::default(),
            &gitrepo(&format!(
                "apiVersion: fleet.cattle.io/v1alpha1\nkind: GitRepo\nmetadata:\n  name: repo-{i:02}\nspec:\n  repo: {}\n  pollingInterval: 1s\n",
                repo.file_url()
            )),
        )
        .await
        .expect("create gitrepo");
    }
    all_at(&client, &first).await;
    // One write per GitRepo, whichever replica made it.
    let expect = |n: usize| n as f64;
    eventually("12 writes", WAIT, Duration::from_millis(100), || async {
        let w = writes(&[&a, &b, &c]).await;
        if w >= expect(REPOS) {
            Ok(())
        } else {
            Err(w.to_string())
        }
    })
    .await
    .expect("writes counted");
    assert_eq!(
        writes(&[&a, &b, &c]).await,
        expect(REPOS),
        "each GitRepo written once"
    );
    // Each GitRepo is counted once, in the shard of the replica that holds it.
    eventually(
        "every GitRepo counted in one held shard",
        WAIT,
        Duration::from_millis(200),
        || async {
            let counted = shard_objects(&[&a, &b, &c]).await;
            if counted == expect(REPOS) {
                Ok(())
            } else {
                Err(counted.to_string())
            }
        },
    )
    .await
    .expect("objects per shard");

    // A replica joins: it takes its share (the others drain theirs to it first).
    let d = replica(&plane, "d", work.path());
    let joined = wait_covered(&[&a, &b, &c, &d]).await;
    println!("join: shards rebalanced over 4 replicas in {joined:.2?}");
    let second = repo
        .commit_files("two", &[("cm.yaml", &configmap("two"))])
        .expect("commit");
    all_at(&client, &second).await;
    let c_writes = c.metric("gitjob_bundle_writes_total").await;

    // A replica is killed: its shards move to the others once their Leases expire.
    c.process.kill();
    let moved = wait_covered(&[&a, &b, &d]).await;
    println!("SIGKILL: the killed replica's shards owned again in {moved:.2?}");

    // A replica frozen past its lease: its shards move; resumed, it writes nothing stale.
    // Read before: a stopped process accepts connections but never answers.
    let b_before = writes(&[&b]).await;
    b.process.signal(SIGSTOP).expect("SIGSTOP");
    wait_covered(&[&a, &d]).await;
    let third = repo
        .commit_files("three", &[("cm.yaml", &configmap("three"))])
        .expect("commit");
    all_at(&client, &third).await;
    b.process.signal(SIGCONT).expect("SIGCONT");
    wait_covered(&[&a, &b, &d]).await;
    assert_eq!(
        writes(&[&b]).await,
        b_before,
        "the resumed replica wrote nothing"
    );
    let total = writes(&[&a, &b, &d]).await + c_writes;
    assert_eq!(
        total,
        expect(3 * REPOS),
        "three commits, each GitRepo written once per commit"
    );
}
