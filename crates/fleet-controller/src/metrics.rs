//! fleet-controller's Prometheus metrics (`fleet_controller_*`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    /// `bundle`, `cluster`, `clustergroup`, `gitrepo`, `token`, `registration`.
    pub controller: String,
    /// `ok` or `error`.
    pub result: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterLabels {
    pub namespace: String,
    pub name: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterStateLabels {
    pub namespace: String,
    pub name: String,
    /// Fleet's BundleDeployment states: `Ready`, `NotReady`, `WaitApplied`, `ErrApplied`,
    /// `OutOfSync`, `Modified`, `Pending`.
    pub state: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    /// `bundles`, `bundledeployments`, `placements` (under dynamic shards), `clusters`.
    pub resource: String,
}

/// The controller's metrics.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    /// `fleet_controller_reconciles_total{controller,result}`.
    pub reconciles: Family<ReconcileLabels, Counter>,
    /// `fleet_controller_writes_total`: creates, updates, deletes and status patches.
    pub writes: Counter,
    /// `fleet_cluster_agent_last_seen_timestamp_seconds{namespace,name}`: when each
    /// Cluster's agent last checked in (the stale-heartbeat alert compares it with `time()`).
    pub agent_last_seen: Family<ClusterLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// `fleet_cluster_bundle_deployments{namespace,name,state}`: each Cluster's
    /// BundleDeployments by state, as its status summary counts them.
    pub bundle_deployments: Family<ClusterStateLabels, Gauge>,
    /// `fleet_controller_planned_deployments`: BundleDeployments planned and not yet
    /// written ([`crate::plan_budget`]).
    pub planned_deployments: Gauge,
    /// `fleet_controller_cached_objects{resource}`: the objects this replica caches (under
    /// dynamic shards, its shards' Bundles and BundleDeployments).
    pub cached_objects: Family<CacheLabels, Gauge>,
}

impl Metrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "fleet_controller_reconciles",
            "Reconciles by controller and result",
            metrics.reconciles.clone(),
        );
        registry.register(
            "fleet_controller_writes",
            "API writes: creates, updates, deletes and status patches",
            metrics.writes.clone(),
        );
        registry.register(
            "fleet_cluster_agent_last_seen_timestamp_seconds",
            "When each Cluster's agent last checked in (Unix seconds)",
            metrics.agent_last_seen.clone(),
        );
        registry.register(
            "fleet_cluster_bundle_deployments",
            "BundleDeployments of each Cluster by state",
            metrics.bundle_deployments.clone(),
        );
        registry.register(
            "fleet_controller_planned_deployments",
            "BundleDeployments planned and not yet written, all Bundles together",
            metrics.planned_deployments.clone(),
        );
        registry.register(
            "fleet_controller_cached_objects",
            "Objects this replica caches, by resource",
            metrics.cached_objects.clone(),
        );
        metrics
    }

    /// Records a Cluster's agent check-in time and its BundleDeployment counts by state.
    pub fn cluster_observed(
        &self,
        namespace: &str,
        name: &str,
        last_seen: Option<jiff::Timestamp>,
        summary: &fleet_api::BundleSummary,
    ) {
        let cluster = ClusterLabels {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        };
        if let Some(seen) = last_seen {
            self.agent_last_seen
                .get_or_create(&cluster)
                .set(seen.as_millisecond() as f64 / 1000.0);
        }
        for (state, count) in [
            ("Ready", summary.ready),
            ("NotReady", summary.not_ready),
            ("WaitApplied", summary.wait_applied),
            ("ErrApplied", summary.err_applied),
            ("OutOfSync", summary.out_of_sync),
            ("Modified", summary.modified),
            ("Pending", summary.pending),
        ] {
            self.bundle_deployments
                .get_or_create(&ClusterStateLabels {
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                    state: state.to_owned(),
                })
                .set(count);
        }
    }

    /// Records how many `resource` objects this replica caches.
    pub fn cached(&self, resource: &str, objects: usize) {
        self.cached_objects
            .get_or_create(&CacheLabels {
                resource: resource.to_owned(),
            })
            .set(i64::try_from(objects).unwrap_or(i64::MAX));
    }

    pub fn reconciled(&self, controller: &str, ok: bool) {
        self.reconciles
            .get_or_create(&ReconcileLabels {
                controller: controller.to_owned(),
                result: if ok { "ok" } else { "error" }.to_owned(),
            })
            .inc();
    }
}
