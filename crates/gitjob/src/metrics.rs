//! gitjob's Prometheus metrics (`gitjob_*`), registered into the binary's registry.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `synced`, `unchanged`, `poll_failed` or `sync_failed`.
    pub result: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    pub provider: String,
    /// `accepted`, `ignored`, `unauthorized` or `bad_request`.
    pub result: String,
}

/// gitjob's metrics.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// `gitjob_reconciles_total{result}`.
    pub reconciles: Family<ResultLabels, Counter>,
    /// `gitjob_bundle_writes_total`: Bundle creates, updates and deletes.
    pub bundle_writes: Counter,
    /// `gitjob_status_writes_total`: GitRepo status patches.
    pub status_writes: Counter,
    /// `gitjob_sync_seconds`: fetch, build and write of a new commit.
    pub sync_seconds: Histogram,
    /// `gitjob_webhooks_total{provider,result}`.
    pub webhooks: Family<WebhookLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            reconciles: Family::default(),
            bundle_writes: Counter::default(),
            status_writes: Counter::default(),
            sync_seconds: Histogram::new([0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0]),
            webhooks: Family::default(),
        }
    }
}

impl Metrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "gitjob_reconciles",
            "GitRepo reconciles by result",
            metrics.reconciles.clone(),
        );
        registry.register(
            "gitjob_bundle_writes",
            "Bundle creates, updates and deletes",
            metrics.bundle_writes.clone(),
        );
        registry.register(
            "gitjob_status_writes",
            "GitRepo status patches",
            metrics.status_writes.clone(),
        );
        registry.register(
            "gitjob_sync_seconds",
            "Time to fetch, build and write the Bundles of a new commit",
            metrics.sync_seconds.clone(),
        );
        registry.register(
            "gitjob_webhooks",
            "Webhook requests by provider and result",
            metrics.webhooks.clone(),
        );
        metrics
    }

    pub fn reconciled(&self, result: &str) {
        self.reconciles
            .get_or_create(&ResultLabels {
                result: result.to_owned(),
            })
            .inc();
    }

    pub fn webhook(&self, provider: &str, result: &str) {
        self.webhooks
            .get_or_create(&WebhookLabels {
                provider: provider.to_owned(),
                result: result.to_owned(),
            })
            .inc();
    }
}
