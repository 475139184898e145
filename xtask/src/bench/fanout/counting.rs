//! What the benchmark watches: BundleDeployments as they appear, and Clusters' roll-ups.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::bail;
use fleet_api::sharding::BUNDLE_SHARD;
use fleet_api::{BundleDeployment, Cluster};
use futures::StreamExt;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};

/// The BundleDeployments seen so far, by (namespace, name): when each first appeared, and the
/// dynamic shard label of its Bundle ([`fleet_api::sharding::BUNDLE_SHARD`]), if any.
pub type Seen = HashMap<(String, String), Appeared>;

/// When a BundleDeployment first appeared to the benchmark's watch, when the API server
/// created it (whole seconds), and its Bundle's shard label.
#[derive(Debug, Clone)]
pub struct Appeared {
    pub at: Instant,
    pub created: Option<jiff::Timestamp>,
    pub bundle_shard: Option<String>,
}

pub type Events =
    futures::stream::BoxStream<'static, Result<watcher::Event<BundleDeployment>, watcher::Error>>;

/// A watch of the BundleDeployments labelled managed, in every namespace, from now: its
/// initial list is read before it returns, so that neither the objects that exist already
/// nor the list itself are part of what is then measured (its timing, its API requests).
pub async fn watch_managed(client: &Client) -> anyhow::Result<Events> {
    let mut events = watcher(
        Api::<BundleDeployment>::all(client.clone()),
        watcher::Config::default().labels("fleet.cattle.io/managed=true"),
    )
    .boxed();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let Some(event) = next(&mut events, deadline).await? else {
            bail!("the BundleDeployments' list took over 300s");
        };
        if let watcher::Event::InitDone = event {
            return Ok(events);
        }
    }
}

/// The watch's next event, `None` once `deadline` has passed; its errors are printed (the
/// watcher retries by itself, and the benchmark's output is plain text).
async fn next(
    events: &mut Events,
    deadline: Instant,
) -> anyhow::Result<Option<watcher::Event<BundleDeployment>>> {
    loop {
        let Ok(event) = tokio::time::timeout_at(deadline.into(), events.next()).await else {
            return Ok(None);
        };
        match event {
            Some(Ok(event)) => return Ok(Some(event)),
            Some(Err(e)) => eprintln!("watch: {e}"),
            None => bail!("watch ended"),
        }
    }
}

/// Waits (at most 900 s) until `events` have shown `total` distinct BundleDeployments that
/// `counts`, recorded in `seen`.
pub async fn seen_until(
    events: &mut Events,
    seen: &mut Seen,
    total: usize,
    counts: impl Fn(&BundleDeployment) -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(900);
    while seen.len() < total {
        let Some(event) = next(events, deadline).await? else {
            bail!("only {}/{total} BundleDeployments after 900s", seen.len());
        };
        match event {
            watcher::Event::Apply(bd) | watcher::Event::InitApply(bd) if counts(&bd) => {
                let key = (bd.namespace().unwrap_or_default(), bd.name_any());
                seen.entry(key).or_insert_with(|| Appeared {
                    at: Instant::now(),
                    created: bd.metadata.creation_timestamp.as_ref().map(|t| t.0),
                    bundle_shard: bd.labels().get(BUNDLE_SHARD).cloned(),
                });
            }
            _ => {}
        }
    }
    Ok(())
}

/// How many Clusters' summaries count `bundles` BundleDeployments.
pub async fn rolled_up(api: &Api<Cluster>, bundles: usize) -> anyhow::Result<usize> {
    Ok(api
        .list(&Default::default())
        .await?
        .items
        .iter()
        .filter(|c| {
            c.status
                .as_ref()
                .is_some_and(|s| s.summary.desired_ready == bundles as i64)
        })
        .count())
}

/// Waits (at most 120 s) until every one of `clusters` Clusters counts `bundles`.
pub async fn eventually_rolled_up(
    api: &Api<Cluster>,
    bundles: usize,
    clusters: usize,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let done = rolled_up(api, bundles).await?;
        if done == clusters {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("only {done}/{clusters} Clusters count their BundleDeployments after 120s");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
