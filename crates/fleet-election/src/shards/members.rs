//! Who is alive: each replica keeps a member Lease of its own (`<base>-member-<identity>`,
//! labelled with the shard group) renewed every retry period, and watches the others'. A
//! member is live while its Lease changed within one lease duration, as this replica saw it
//! (robust to clock skew, like the elector's expiry).

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::watcher;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::assign::{Member, fnv1a64};

/// The label on member Leases naming their shard group.
pub const MEMBER_LABEL: &str = "election.fleet-rs.io/member-of";
/// The annotation on a member Lease with the member's zone.
pub const ZONE_ANNOTATION: &str = "election.fleet-rs.io/zone";

/// The label value of a shard group (its base Lease name, hashed if too long for a label).
pub fn group_label(base: &str) -> String {
    if base.len() <= 63 {
        base.to_owned()
    } else {
        format!("group-{:016x}", fnv1a64(base.as_bytes()))
    }
}

/// A member Lease's name: DNS-safe, unique per identity.
pub fn member_lease(base: &str, identity: &str) -> String {
    let safe: String = identity
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let name = format!("{base}-member-{}", safe.trim_matches('-'));
    if name.len() <= 253 {
        name
    } else {
        format!("{base}-member-{:016x}", fnv1a64(identity.as_bytes()))
    }
}

/// Keeps this replica's member Lease and publishes the live members (this one included).
pub(crate) struct Membership {
    pub api: Api<Lease>,
    pub base: String,
    pub me: Member,
    /// The layout's shard count: replicas of another count are not members of this group.
    pub shards: u32,
    pub lease_duration: Duration,
    pub retry_period: Duration,
}

impl Membership {
    /// Runs until `shutdown`, then deletes this replica's member Lease (the others see it
    /// leave at once instead of after a lease duration).
    pub async fn run(self, live: watch::Sender<Vec<Member>>, shutdown: CancellationToken) {
        let own = member_lease(&self.base, &self.me.identity);
        let label = group_label(&format!("{}-of-{}", self.base, self.shards));
        let config = watcher::Config::default().labels(&format!("{MEMBER_LABEL}={label}"));
        let mut events = watcher(self.api.clone(), config).boxed();
        let mut seen: BTreeMap<String, (Member, Option<String>, Instant)> = BTreeMap::new();
        let mut renew = tokio::time::interval(self.retry_period);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = renew.tick() => self.renew(&own, &label).await,
                event = events.next() => match event {
                    Some(Ok(watcher::Event::Apply(lease) | watcher::Event::InitApply(lease))) => {
                        observe(&mut seen, &lease);
                    }
                    Some(Ok(watcher::Event::Delete(lease))) => {
                        seen.remove(&lease.metadata.name.unwrap_or_default());
                    }
                    Some(Ok(_)) => {}
                    Some(Err(error)) => {
                        tracing::debug!(%error, "member watch error; retrying");
                        tokio::time::sleep(self.retry_period).await;
                    }
                    None => break,
                },
            }
            let now = Instant::now();
            let mut members: Vec<Member> = seen
                .values()
                .filter(|(_, _, changed)| now.duration_since(*changed) < self.lease_duration)
                .map(|(member, _, _)| member.clone())
                .filter(|member| member.identity != self.me.identity)
                .collect();
            members.push(self.me.clone());
            members.sort();
            live.send_if_modified(|current| {
                if *current == members {
                    false
                } else {
                    *current = members;
                    true
                }
            });
        }
        let _ = self.api.delete(&own, &DeleteParams::default()).await;
    }

    async fn renew(&self, own: &str, label: &str) {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(own.to_owned()),
                labels: Some(BTreeMap::from([(
                    MEMBER_LABEL.to_owned(),
                    label.to_owned(),
                )])),
                annotations: Some(BTreeMap::from([(
                    ZONE_ANNOTATION.to_owned(),
                    self.me.zone.clone(),
                )])),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.me.identity.clone()),
                lease_duration_seconds: Some(
                    i32::try_from(self.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX),
                ),
                renew_time: Some(MicroTime(jiff::Timestamp::now())),
                ..LeaseSpec::default()
            }),
        };
        let mut lease = serde_json::to_value(&lease).unwrap_or_default();
        lease["apiVersion"] = "coordination.k8s.io/v1".into();
        lease["kind"] = "Lease".into();
        let params = PatchParams::apply("fleet-rs-membership").force();
        if let Err(error) = self.api.patch(own, &params, &Patch::Apply(&lease)).await {
            tracing::debug!(%error, lease = own, "renewing the member Lease failed");
        }
    }
}

/// Records a member Lease; its change time moves only when its resourceVersion does.
fn observe(seen: &mut BTreeMap<String, (Member, Option<String>, Instant)>, lease: &Lease) {
    let name = lease.metadata.name.clone().unwrap_or_default();
    let identity = lease
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.clone())
        .unwrap_or_default();
    if identity.is_empty() {
        return;
    }
    let zone = lease
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ZONE_ANNOTATION).cloned())
        .unwrap_or_default();
    let version = lease.metadata.resource_version.clone();
    let member = Member { identity, zone };
    let changed = match seen.get(&name) {
        Some((_, old, at)) if *old == version => *at,
        _ => Instant::now(),
    };
    seen.insert(name, (member, version, changed));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_dns_safe_and_labels_fit() {
        assert_eq!(
            member_lease("gitjob-shards", "gitjob-7d9f_x.Y"),
            "gitjob-shards-member-gitjob-7d9f-x-y"
        );
        assert_eq!(group_label("short"), "short");
        assert!(group_label(&"x".repeat(80)).len() <= 63);
    }
}
