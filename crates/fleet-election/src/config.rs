//! Election configuration: which Lease, who we are, and the three timings.

use std::time::Duration;

use fleet_api::duration::parse_go_duration;

use crate::Error;

/// Lease duration, renew deadline and retry period, with client-go's meaning.
///
/// - `lease_duration`: how long a standby waits, from when it last saw the Lease change, before
///   it may take the Lease over;
/// - `renew_deadline`: how long a leader may go without a successful renew before it stops
///   acting (its cancellation fires); shorter than the lease duration, so a leader always stops
///   before any standby can acquire;
/// - `retry_period`: how often the leader renews and a standby retries after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timings {
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl Default for Timings {
    /// client-go's defaults (15 s / 10 s / 2 s), also controller-runtime's. Fleet's chart uses
    /// 30 s / 25 s / 10 s; with watch-driven takeover and release on shutdown, fleet-rs does not
    /// need a long retry period to keep failover fast.
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

impl Timings {
    /// Checks renew deadline < lease duration, retry period < renew deadline, everything > 0,
    /// and a lease duration of whole seconds (the Lease stores `leaseDurationSeconds`).
    pub fn validate(&self) -> Result<(), Error> {
        let invalid = |message: String| Err(Error::InvalidConfig { message });
        let Timings {
            lease_duration,
            renew_deadline,
            retry_period,
        } = *self;
        if lease_duration.is_zero() || renew_deadline.is_zero() || retry_period.is_zero() {
            return invalid(format!(
                "lease duration ({lease_duration:?}), renew deadline ({renew_deadline:?}) and \
                 retry period ({retry_period:?}) must all be greater than zero"
            ));
        }
        if lease_duration.subsec_nanos() != 0 {
            return invalid(format!(
                "lease duration ({lease_duration:?}) must be whole seconds: the Lease records \
                 leaseDurationSeconds"
            ));
        }
        if renew_deadline >= lease_duration {
            return invalid(format!(
                "renew deadline ({renew_deadline:?}) must be shorter than the lease duration \
                 ({lease_duration:?}), or a leader could still act after a standby took over"
            ));
        }
        if retry_period >= renew_deadline {
            return invalid(format!(
                "retry period ({retry_period:?}) must be shorter than the renew deadline \
                 ({renew_deadline:?}), or a leader never gets a second renew attempt"
            ));
        }
        Ok(())
    }

    /// `leaseDurationSeconds` as written into the Lease.
    pub fn lease_duration_seconds(&self) -> i32 {
        i32::try_from(self.lease_duration.as_secs()).unwrap_or(i32::MAX)
    }
}

/// Everything one elector needs.
#[derive(Debug, Clone)]
pub struct ElectionConfig {
    /// The Lease's name, e.g. `fleet-controller-leader-election`.
    pub lease_name: String,
    /// The Lease's namespace (the release namespace).
    pub namespace: String,
    /// This replica's `holderIdentity`; unique per process.
    pub identity: String,
    pub timings: Timings,
    /// How long the work may take to stop after leadership ends before it is aborted
    /// (default: `lease_duration - renew_deadline`, the margin before anyone else can lead).
    pub stop_grace: Duration,
}

impl ElectionConfig {
    pub fn new(
        lease_name: impl Into<String>,
        namespace: impl Into<String>,
        identity: impl Into<String>,
        timings: Timings,
    ) -> Result<Self, Error> {
        timings.validate()?;
        let config = Self {
            lease_name: lease_name.into(),
            namespace: namespace.into(),
            identity: identity.into(),
            stop_grace: timings.lease_duration - timings.renew_deadline,
            timings,
        };
        if config.lease_name.is_empty() || config.namespace.is_empty() {
            return Err(Error::InvalidConfig {
                message: "the Lease name and namespace must not be empty".to_owned(),
            });
        }
        if config.identity.is_empty() {
            return Err(Error::InvalidConfig {
                message: "the identity must not be empty: an empty holderIdentity means \
                          \"released\""
                    .to_owned(),
            });
        }
        Ok(config)
    }
}

/// Command-line flags and environment variables for the election, shared by every binary.
///
/// Fleet's environment names are accepted (`CATTLE_ELECTION_*`, Go duration syntax such as
/// `30s` or `1m30s`), so a Fleet chart's settings carry over.
#[derive(Debug, Clone, clap::Args)]
pub struct ElectionArgs {
    /// How long standbys wait after the Lease last changed before taking it over.
    #[arg(
        long = "election-lease-duration",
        env = "CATTLE_ELECTION_LEASE_DURATION",
        default_value = "15s",
        value_parser = parse_go_duration
    )]
    pub lease_duration: Duration,
    /// How long the leader may go without a successful renew before it stops acting.
    #[arg(
        long = "election-renew-deadline",
        env = "CATTLE_ELECTION_RENEW_DEADLINE",
        default_value = "10s",
        value_parser = parse_go_duration
    )]
    pub renew_deadline: Duration,
    /// How often the leader renews, and standbys retry after a failed attempt.
    #[arg(
        long = "election-retry-period",
        env = "CATTLE_ELECTION_RETRY_PERIOD",
        default_value = "2s",
        value_parser = parse_go_duration
    )]
    pub retry_period: Duration,
    /// The holder identity (default: `$POD_NAME` or the hostname, plus a random suffix).
    #[arg(long = "election-identity", env = "FLEET_ELECTION_IDENTITY")]
    pub identity: Option<String>,
    /// `coordinated`: the API server picks the leader (KEP-4355; the old version leads until
    /// a rolling upgrade is complete), where it offers it; else the standard election.
    #[arg(
        long = "election-strategy",
        env = "FLEET_ELECTION_STRATEGY",
        value_enum,
        default_value = "standard"
    )]
    pub strategy: Strategy,
    /// The version this replica reports as a coordinated-election candidate.
    #[arg(long = "election-binary-version", hide = true, default_value = env!("CARGO_PKG_VERSION"))]
    pub binary_version: String,
}

/// How the leader is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Strategy {
    /// Replicas race for the Lease (client-go's election).
    Standard,
    /// The API server chooses among registered candidates.
    Coordinated,
}

impl ElectionArgs {
    pub fn timings(&self) -> Timings {
        Timings {
            lease_duration: self.lease_duration,
            renew_deadline: self.renew_deadline,
            retry_period: self.retry_period,
        }
    }

    /// The config for one Lease, validated.
    pub fn config(&self, lease_name: &str, namespace: &str) -> Result<ElectionConfig, Error> {
        let mut identity = self.identity.clone().unwrap_or_else(default_identity);
        if self.strategy == Strategy::Coordinated {
            // The API server names the holder after the candidate object.
            identity = candidate_identity(&identity);
        }
        ElectionConfig::new(lease_name, namespace, identity, self.timings())
    }
}

/// `$POD_NAME` (or the hostname) plus `_` and a random suffix, like client-go's
/// `hostname_uuid`: two processes never share an identity, even in one pod after a restart.
pub fn default_identity() -> String {
    let base = std::env::var("POD_NAME")
        .ok()
        .filter(|name| !name.is_empty())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "fleet-rs".to_owned());
    format!("{base}_{}", random_suffix())
}

fn random_suffix() -> String {
    use std::hash::{BuildHasher, Hasher};
    // RandomState is seeded from the OS's randomness once per process.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    format!("{:012x}", hasher.finish() & 0xffff_ffff_ffff)
}

/// An identity made valid for a LeaseCandidate name (`host_1a2b` becomes `host-1a2b`).
pub fn candidate_identity(identity: &str) -> String {
    let name: String = identity
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    name.trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timings(lease: u64, renew: u64, retry: u64) -> Timings {
        Timings {
            lease_duration: Duration::from_millis(lease),
            renew_deadline: Duration::from_millis(renew),
            retry_period: Duration::from_millis(retry),
        }
    }

    #[test]
    fn defaults_are_client_go_and_valid() {
        let t = Timings::default();
        assert_eq!(t, timings(15_000, 10_000, 2_000));
        assert!(t.validate().is_ok());
        assert_eq!(t.lease_duration_seconds(), 15);
    }

    #[test]
    fn invalid_timings_are_refused_with_the_reason() {
        let cases = [
            (
                timings(10_000, 10_000, 2_000),
                "shorter than the lease duration",
            ),
            (
                timings(15_000, 10_000, 10_000),
                "shorter than the renew deadline",
            ),
            (timings(15_000, 0, 1_000), "greater than zero"),
            (timings(1_500, 1_000, 200), "whole seconds"),
        ];
        for (t, reason) in cases {
            let err = t.validate().expect_err("invalid").to_string();
            assert!(err.contains(reason), "{t:?}: {err}");
        }
    }

    #[test]
    fn identities_are_unique_and_non_empty() {
        let a = default_identity();
        let b = default_identity();
        assert!(!a.is_empty());
        assert_ne!(a, b);
    }

    #[test]
    fn config_refuses_empty_identity() {
        assert!(ElectionConfig::new("l", "ns", "", Timings::default()).is_err());
        let config = ElectionConfig::new("l", "ns", "me", Timings::default()).expect("valid");
        assert_eq!(config.stop_grace, Duration::from_secs(5));
    }
}
