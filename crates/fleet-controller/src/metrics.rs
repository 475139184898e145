//! fleet-controller's Prometheus metrics (`fleet_controller_*`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    /// `bundle`, `cluster`, `clustergroup`, `gitrepo`, `token`, `registration`.
    pub controller: String,
    /// `ok` or `error`.
    pub result: String,
}

/// The controller's metrics.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    /// `fleet_controller_reconciles_total{controller,result}`.
    pub reconciles: Family<ReconcileLabels, Counter>,
    /// `fleet_controller_writes_total`: creates, updates, deletes and status patches.
    pub writes: Counter,
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
        metrics
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
