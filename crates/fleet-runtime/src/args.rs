//! Flags and environment variables every binary accepts.

use std::net::SocketAddr;
use std::path::PathBuf;

use fleet_election::ElectionArgs;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

/// Shared configuration, flattened into each binary's clap command. Environment names follow
/// Fleet's where Fleet has them (`NAMESPACE`, `FLEET_METRICS_BIND_ADDRESS`,
/// `FLEET_HEALTHPROBE_BIND_ADDRESS`, `CATTLE_ELECTION_*`).
#[derive(Debug, Clone, clap::Args)]
pub struct RuntimeArgs {
    /// Kubeconfig file; without it, the in-cluster service account or `$KUBECONFIG`.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context (default: the current one).
    #[arg(long)]
    pub context: Option<String>,
    /// The namespace the component runs in: its Lease lives there.
    #[arg(long, env = "NAMESPACE", default_value = "cattle-fleet-system")]
    pub namespace: String,
    /// Address of the Prometheus `/metrics` endpoint.
    #[arg(
        long,
        env = "FLEET_METRICS_BIND_ADDRESS",
        default_value = "0.0.0.0:8080"
    )]
    pub metrics_bind_address: SocketAddr,
    /// Address of `/healthz` and `/readyz` (and `/metrics` again).
    #[arg(
        long,
        env = "FLEET_HEALTHPROBE_BIND_ADDRESS",
        default_value = "0.0.0.0:8081"
    )]
    pub health_bind_address: SocketAddr,
    #[arg(long, env = "FLEET_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Run reconcilers only while holding the Lease (turn off only with a single replica).
    #[arg(long, env = "FLEET_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    /// Fleet's static sharding: handle only objects labelled `fleet.cattle.io/shard-ref=<ID>`
    /// and elect through the shard's own Lease (`<lease>-<ID>`); without it, only unlabelled
    /// objects.
    #[arg(long, env = "SHARD_ID")]
    pub shard_id: Option<String>,
    /// This replica's zone (`topology.kubernetes.io/zone` of its node), so that dynamic shards
    /// spread over zones.
    #[arg(long, env = "FLEET_ZONE", default_value = "")]
    pub zone: String,
    #[command(flatten)]
    pub election: ElectionArgs,
}

impl RuntimeArgs {
    /// The shard this replica works for.
    pub fn shard(&self) -> fleet_api::sharding::Shard {
        fleet_api::sharding::Shard::new(self.shard_id.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        runtime: RuntimeArgs,
    }

    #[test]
    fn flags_are_consistent_and_default_as_documented() {
        Cli::command().debug_assert();
        let cli = Cli::parse_from(["x", "--leader-elect=false", "--election-lease-duration=30s"]);
        assert!(!cli.runtime.leader_elect);
        assert_eq!(cli.runtime.election.lease_duration.as_secs(), 30);
        assert_eq!(cli.runtime.health_bind_address.port(), 8081);
    }
}
