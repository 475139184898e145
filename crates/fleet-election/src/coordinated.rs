//! Coordinated leader election (KEP-4355, `coordination.k8s.io/v1beta1` LeaseCandidate, the
//! API server's `CoordinatedLeaderElection` feature): each replica registers a LeaseCandidate
//! named after its identity, with its binary and emulation versions; the API server's election
//! controller writes the chosen holder into the Lease (the oldest emulation version first, so
//! during a rolling upgrade the old version keeps leading until the new one is everywhere) and
//! asks a holder to step down through `preferredHolder`. The elector then only renews what it
//! was given ([`crate::Elector::coordinated`]).
//!
//! Where the API server does not offer it, [`spawn`] says so in one log line and falls back
//! to the standard election.

use std::time::Duration;

use k8s_openapi::api::coordination::v1beta1::{LeaseCandidate, LeaseCandidateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use tokio_util::sync::CancellationToken;

use crate::config::ElectionConfig;
use crate::elector::{Elector, ElectorHandle};
use crate::metrics::ElectionMetrics;

/// The only strategy the API server's election controller implements.
pub const STRATEGY: &str = "OldestEmulationVersion";

/// A candidate renews its LeaseCandidate at least this often (the API server drops candidates
/// not renewed for much longer), and at once when the controller pings it.
const CANDIDATE_REFRESH: Duration = Duration::from_secs(60);

/// Whether an identity can name a LeaseCandidate (the election controller makes the
/// candidate's name the Lease's holder, so the two must be the same string).
pub fn valid_identity(identity: &str) -> bool {
    !identity.is_empty()
        && identity.len() <= 253
        && identity
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && identity.starts_with(|c: char| c.is_ascii_alphanumeric())
        && identity.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// Whether the API server serves LeaseCandidates.
pub async fn available(client: &kube::Client) -> bool {
    client
        .list_api_group_resources("coordination.k8s.io/v1beta1")
        .await
        .is_ok_and(|list| list.resources.iter().any(|r| r.name == "leasecandidates"))
}

/// Starts a coordinated elector on `config`'s Lease, registering this replica as a candidate
/// until `shutdown`; or, where the API server does not offer coordinated election, a standard
/// elector (said in one warning). `config.identity` must be [`valid_identity`].
pub async fn spawn(
    client: kube::Client,
    config: ElectionConfig,
    metrics: ElectionMetrics,
    binary_version: &str,
    shutdown: CancellationToken,
) -> ElectorHandle {
    if !valid_identity(&config.identity) || !available(&client).await {
        tracing::warn!(lease = %config.lease_name, identity = %config.identity, "coordinated leader election is not available (it needs the API server's CoordinatedLeaderElection feature and coordination.k8s.io/v1beta1, and an identity that is a valid object name): using the standard election");
        return Elector::new(client, config, metrics).spawn();
    }
    let candidate = Candidate {
        api: Api::namespaced(client.clone(), &config.namespace),
        name: config.identity.clone(),
        lease: config.lease_name.clone(),
        version: binary_version.to_owned(),
        period: config.timings.retry_period,
    };
    tokio::spawn(candidate.run(shutdown));
    tracing::info!(lease = %config.lease_name, identity = %config.identity, version = binary_version, "coordinated leader election: the API server picks the holder");
    Elector::new(client, config, metrics).coordinated().spawn()
}

/// This replica's LeaseCandidate.
struct Candidate {
    api: Api<LeaseCandidate>,
    name: String,
    lease: String,
    version: String,
    period: Duration,
}

impl Candidate {
    async fn run(self, shutdown: CancellationToken) {
        loop {
            if let Err(error) = self.refresh().await {
                tracing::debug!(candidate = %self.name, %error, "LeaseCandidate refresh failed");
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(self.period) => {}
            }
        }
        let _ = self.api.delete(&self.name, &DeleteParams::default()).await;
    }

    /// Creates the candidate, or renews it when the election controller pinged it
    /// (`pingTime` after `renewTime`) or it is getting old.
    async fn refresh(&self) -> Result<(), kube::Error> {
        let now = jiff::Timestamp::now();
        let Some(mut current) = self.api.get_opt(&self.name).await? else {
            let candidate = LeaseCandidate {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: LeaseCandidateSpec {
                    lease_name: self.lease.clone(),
                    binary_version: self.version.clone(),
                    emulation_version: Some(self.version.clone()),
                    strategy: STRATEGY.to_owned(),
                    renew_time: Some(MicroTime(now)),
                    ping_time: None,
                },
            };
            self.api.create(&PostParams::default(), &candidate).await?;
            return Ok(());
        };
        let spec = &mut current.spec;
        let renewed = spec.renew_time.as_ref().map(|t| t.0);
        let pinged = spec.ping_time.as_ref().map(|t| t.0);
        let stale =
            renewed.is_none_or(|at| now.duration_since(at).unsigned_abs() >= CANDIDATE_REFRESH);
        if !(stale || pinged > renewed) {
            return Ok(());
        }
        spec.renew_time = Some(MicroTime(now));
        self.api
            .replace(&self.name, &PostParams::default(), &current)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_become_candidate_names() {
        assert!(valid_identity("gitjob-0"));
        assert!(!valid_identity("host_1a2b"));
        assert!(!valid_identity("-x"));
        assert_eq!(crate::config::candidate_identity("Host_1A2b"), "host-1a2b");
        assert!(valid_identity(&crate::config::candidate_identity(
            "pod-7d9f_0123abcd"
        )));
    }
}
