//! Prometheus metrics of the election, registered into the binary's registry (no globals).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LeaseLabels {
    pub lease: String,
}

/// `fleet_leader_*` metrics, one series per Lease.
#[derive(Debug, Clone)]
pub struct ElectionMetrics {
    /// `fleet_leader_is_leader{lease}`: 1 while this replica leads.
    pub is_leader: Family<LeaseLabels, Gauge>,
    /// `fleet_leader_transitions_total{lease}`: how often this replica became leader.
    pub transitions: Family<LeaseLabels, Counter>,
    /// `fleet_leader_failover_seconds{lease}`: from the last change this replica saw while
    /// another replica held the Lease (its last renew, or its release) to this replica's
    /// successful acquire.
    pub failover: Family<LeaseLabels, Histogram>,
    /// `fleet_leader_renew_failures_total{lease}`: failed renew attempts while leading.
    pub renew_failures: Family<LeaseLabels, Counter>,
}

impl Default for ElectionMetrics {
    fn default() -> Self {
        Self {
            is_leader: Family::default(),
            transitions: Family::default(),
            failover: Family::new_with_constructor(|| {
                Histogram::new([
                    0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 60.0,
                ])
            }),
            renew_failures: Family::default(),
        }
    }
}

impl ElectionMetrics {
    /// Creates the metrics and registers them.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "fleet_leader_is_leader",
            "Whether this replica holds the Lease (1) or stands by (0)",
            metrics.is_leader.clone(),
        );
        registry.register(
            "fleet_leader_transitions",
            "Times this replica became leader",
            metrics.transitions.clone(),
        );
        registry.register(
            "fleet_leader_failover_seconds",
            "Time from the previous holder's last observed renew or release to this replica's acquire",
            metrics.failover.clone(),
        );
        registry.register(
            "fleet_leader_renew_failures",
            "Failed renew attempts while leading",
            metrics.renew_failures.clone(),
        );
        metrics
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_the_documented_names() {
        let mut registry = Registry::default();
        let metrics = ElectionMetrics::register(&mut registry);
        let labels = LeaseLabels {
            lease: "l".to_owned(),
        };
        metrics.is_leader.get_or_create(&labels).set(1);
        metrics.transitions.get_or_create(&labels).inc();
        metrics.failover.get_or_create(&labels).observe(0.2);
        metrics.renew_failures.get_or_create(&labels).inc();
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        for line in [
            "fleet_leader_is_leader{lease=\"l\"} 1",
            "fleet_leader_transitions_total{lease=\"l\"} 1",
            "fleet_leader_failover_seconds_count{lease=\"l\"} 1",
            "fleet_leader_renew_failures_total{lease=\"l\"} 1",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }
}
