//! `cargo xtask bench gitjob`: the release gitjob binary on a local control plane, reading a
//! real git repository over smart HTTP. Prints commit-to-Bundle latency through a webhook and
//! through polling (p50/p95/max), the time to turn a repository of many bundles into Bundles,
//! and the API writes made by unchanged polls.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use fleet_api::duration::parse_go_duration;
use fleet_api::{Bundle, GitRepo};
use fleet_testkit::git::{GitHttpServer, GitRepoFixture};
use fleet_testkit::{
    ControlPlane, Lifetime, ManagedProcess, apply_crds, http_post, ports, wait_for,
};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};

use super::{block_on, build_release_bin, percentile};

const NS: &str = "fleet-local";

#[derive(Debug, clap::Args)]
pub struct GitjobArgs {
    /// Commits pushed per mode (webhook, polling).
    #[arg(long, default_value_t = 20)]
    trials: usize,
    /// Bundles in the large repository.
    #[arg(long, default_value_t = 100)]
    bundles: usize,
    /// The polling GitRepo's `pollingInterval` (Fleet's default is 15s).
    #[arg(long, default_value = "2s", value_parser = parse_go_duration)]
    polling_interval: Duration,
}

struct Setup {
    plane: ControlPlane,
    client: Client,
    server: GitHttpServer,
    _gitjob: ManagedProcess,
    admin_port: u16,
    webhook_port: u16,
}

pub fn run(args: &GitjobArgs) -> anyhow::Result<()> {
    let binary = build_release_bin("gitjob", "gitjob")?;
    block_on(bench(args, &binary))
}

async fn bench(args: &GitjobArgs, binary: &std::path::Path) -> anyhow::Result<()> {
    let root = tempfile::tempdir()?;
    let webhook_repo = GitRepoFixture::new()?;
    let polling_repo = GitRepoFixture::new()?;
    for repo in [&webhook_repo, &polling_repo] {
        repo.commit_files("start", &[("cm.yaml", &configmap("v0"))])?;
    }
    let large_repo = many_bundles(args.bundles)?;
    let setup = start(binary, root.path(), &webhook_repo).await?;
    create_gitrepo(
        &setup.client,
        "webhook",
        &setup.server.url(&webhook_repo.dir_name()),
        "  disablePolling: true\n",
    )
    .await?;
    let interval = format!("{}ms", args.polling_interval.as_millis());
    create_gitrepo(
        &setup.client,
        "polling",
        &setup.server.url(&polling_repo.dir_name()),
        &format!("  pollingInterval: {interval}\n"),
    )
    .await?;
    let bundles: Api<Bundle> = Api::namespaced(setup.client.clone(), NS);
    for name in ["webhook", "polling"] {
        wait_for(&bundles, name, Duration::from_secs(120), |_| true)
            .await
            .context("first Bundles")?;
    }
    let via_webhook = via_webhook(&setup, &webhook_repo, args.trials).await?;
    let via_polling = via_polling(&setup, &polling_repo, args.trials).await?;

    // Unchanged polls: writes before and after a few intervals with no commit.
    let writes_before = writes(setup.admin_port).await;
    tokio::time::sleep(args.polling_interval * 3).await;
    let writes_after = writes(setup.admin_port).await;

    let (large_elapsed, count) = large_repository(&setup, &large_repo).await?;
    println!(
        "gitjob benchmark (release build, local control plane {}, git over smart HTTP)",
        setup.plane.server()
    );
    report("commit → Bundle via webhook", &via_webhook);
    report(
        &format!("commit → Bundle via polling ({interval} interval)"),
        &via_polling,
    );
    println!(
        "repository with {} bundles → {count} Bundles: {:.2}s",
        args.bundles,
        large_elapsed.as_secs_f64()
    );
    println!(
        "API writes during {} unchanged polling intervals: {}",
        3,
        writes_after - writes_before
    );
    Ok(())
}

/// A repository of `bundles` directories `apps/app-NNN`, a ConfigMap each.
fn many_bundles(bundles: usize) -> anyhow::Result<GitRepoFixture> {
    let repo = GitRepoFixture::new()?;
    let files: Vec<(String, String)> = (0..bundles)
        .map(|i| {
            (
                format!("apps/app-{i:03}/cm.yaml"),
                configmap(&format!("app-{i}")),
            )
        })
        .collect();
    let borrowed: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    repo.commit_files("many bundles", &borrowed)?;
    Ok(repo)
}

/// Commits to `repo` `trials` times, each announced by a GitHub push webhook: the time from
/// each commit until its Bundle carries it.
async fn via_webhook(
    setup: &Setup,
    repo: &GitRepoFixture,
    trials: usize,
) -> anyhow::Result<Vec<Duration>> {
    let url = setup.server.url(&repo.dir_name());
    let mut samples = Vec::with_capacity(trials);
    for trial in 0..trials {
        let commit = repo.commit_files("bump", &[("cm.yaml", &configmap(&format!("w{trial}")))])?;
        let started = Instant::now();
        let body = serde_json::json!({
            "ref": "refs/heads/master",
            "after": commit,
            "repository": {"clone_url": url},
        })
        .to_string();
        let (status, response) = http_post(
            setup.webhook_port,
            "/",
            &[("X-GitHub-Event", "push")],
            body.as_bytes(),
        )
        .await?;
        if status != 200 {
            bail!("webhook answered {status}: {response}");
        }
        wait_commit(setup, "webhook", &commit).await?;
        samples.push(started.elapsed());
        wait_status(setup, "webhook", &commit).await?;
    }
    Ok(samples)
}

/// Commits to `repo` `trials` times, found by polling: the time from each commit until its
/// Bundle carries it.
async fn via_polling(
    setup: &Setup,
    repo: &GitRepoFixture,
    trials: usize,
) -> anyhow::Result<Vec<Duration>> {
    let mut samples = Vec::with_capacity(trials);
    for trial in 0..trials {
        let commit = repo.commit_files("bump", &[("cm.yaml", &configmap(&format!("p{trial}")))])?;
        let started = Instant::now();
        wait_commit(setup, "polling", &commit).await?;
        samples.push(started.elapsed());
        // The status write wakes the reconciler once more; let that pass, so that the next
        // commit lands at a random point of the polling cycle.
        wait_status(setup, "polling", &commit).await?;
        tokio::time::sleep(Duration::from_millis(100 + 37 * trial as u64 % 500)).await;
    }
    Ok(samples)
}

/// The GitRepo `large` on `repo`: how long until it is synced, and how many Bundles it made.
async fn large_repository(
    setup: &Setup,
    repo: &GitRepoFixture,
) -> anyhow::Result<(Duration, usize)> {
    let started = Instant::now();
    create_gitrepo(
        &setup.client,
        "large",
        &setup.server.url(&repo.dir_name()),
        "  disablePolling: true\n  paths: [\"apps/*\"]\n",
    )
    .await?;
    let gitrepos: Api<GitRepo> = Api::namespaced(setup.client.clone(), NS);
    wait_for(&gitrepos, "large", Duration::from_secs(300), |g| {
        g.status.as_ref().is_some_and(|s| s.commit.is_some())
    })
    .await
    .context("large repository synced")?;
    let elapsed = started.elapsed();
    let bundles: Api<Bundle> = Api::namespaced(setup.client.clone(), NS);
    let count = bundles
        .list_metadata(&ListParams::default().labels("fleet.cattle.io/repo-name=large"))
        .await?
        .items
        .len();
    Ok((elapsed, count))
}

async fn start(
    binary: &std::path::Path,
    dir: &std::path::Path,
    any_repo: &GitRepoFixture,
) -> anyhow::Result<Setup> {
    let plane = ControlPlane::start().await?;
    let client = plane.client();
    apply_crds(&client, &fleet_api::crds()).await?;
    let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": NS}}))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await?;
    let server = GitHttpServer::start(any_repo.parent_dir(), None).await?;
    let [admin_port, webhook_port] = ports::free_ports::<2>()?;
    let mut cmd = std::process::Command::new(binary);
    cmd.args([
        format!("--kubeconfig={}", plane.kubeconfig_path().display()),
        "--namespace=default".to_owned(),
        format!("--metrics-bind-address=127.0.0.1:{admin_port}"),
        format!("--health-bind-address=127.0.0.1:{admin_port}"),
        format!("--webhook-bind-address=127.0.0.1:{webhook_port}"),
        // The benchmark posts unsigned pushes to a receiver on loopback.
        "--webhook-allow-unsigned".to_owned(),
        format!("--cache-dir={}", dir.join("cache").display()),
    ]);
    let gitjob = ManagedProcess::spawn("gitjob", cmd, &dir.join("gitjob.log"), Lifetime::Owned)?;
    Ok(Setup {
        plane,
        client,
        server,
        _gitjob: gitjob,
        admin_port,
        webhook_port,
    })
}

async fn create_gitrepo(client: &Client, name: &str, url: &str, extra: &str) -> anyhow::Result<()> {
    let yaml = format!(
        "apiVersion: fleet.cattle.io/v1alpha1\nkind: GitRepo\nmetadata:\n  name: {name}\n  namespace: {NS}\nspec:\n  repo: {url}\n{extra}"
    );
    let gitrepo: GitRepo = serde_saphyr::from_str(&yaml)?;
    Api::<GitRepo>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &gitrepo)
        .await?;
    Ok(())
}

/// Waits until the GitRepo `name` reports `commit`.
async fn wait_status(setup: &Setup, name: &str, commit: &str) -> anyhow::Result<()> {
    let gitrepos: Api<GitRepo> = Api::namespaced(setup.client.clone(), NS);
    wait_for(&gitrepos, name, Duration::from_secs(60), |g| {
        g.status.as_ref().and_then(|s| s.commit.as_deref()) == Some(commit)
    })
    .await
    .with_context(|| format!("GitRepo {name} at {commit}"))?;
    Ok(())
}

/// Waits until the Bundle `name` carries `commit`.
async fn wait_commit(setup: &Setup, name: &str, commit: &str) -> anyhow::Result<()> {
    let bundles: Api<Bundle> = Api::namespaced(setup.client.clone(), NS);
    wait_for(&bundles, name, Duration::from_secs(60), |b| {
        b.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(fleet_api::labels::COMMIT))
            .is_some_and(|c| c == commit)
    })
    .await
    .with_context(|| format!("Bundle {name} at {commit}"))?;
    Ok(())
}

/// Bundle and status writes so far, from gitjob's metrics.
async fn writes(port: u16) -> f64 {
    fleet_testkit::metric(port, "gitjob_bundle_writes_total").await
        + fleet_testkit::metric(port, "gitjob_status_writes_total").await
}

fn report(what: &str, samples: &[Duration]) {
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    println!(
        "{what}: n={} p50={:.0}ms p95={:.0}ms max={:.0}ms",
        ms.len(),
        percentile(&ms, 50.0),
        percentile(&ms, 95.0),
        ms.last().copied().unwrap_or_default(),
    );
}

fn configmap(name: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  k: v\n")
}
