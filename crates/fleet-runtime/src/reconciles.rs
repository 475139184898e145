//! What every reconciler of every binary reports, written once: a tracing span per reconcile
//! with the controller's name and the object's key, the reconcile's duration
//! (`fleet_reconcile_duration_seconds{controller}`), and its errors by reason
//! (`fleet_reconcile_errors_total{controller,reason}`, the reason being the error's variant).

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use futures::FutureExt as _;
use futures::future::BoxFuture;
use kube::runtime::controller::Action;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tracing::Instrument as _;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ControllerLabels {
    controller: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    controller: String,
    reason: String,
}

/// The reconcile metrics of one binary.
#[derive(Debug, Clone)]
pub struct Reconciles {
    duration: Family<ControllerLabels, Histogram>,
    errors: Family<ErrorLabels, Counter>,
}

impl Reconciles {
    /// Creates the metrics and registers them.
    pub fn register(registry: &mut Registry) -> Self {
        let reconciles = Self {
            duration: Family::new_with_constructor(|| {
                Histogram::new([
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                ])
            }),
            errors: Family::default(),
        };
        registry.register(
            "fleet_reconcile_duration_seconds",
            "How long one reconcile took, by controller",
            reconciles.duration.clone(),
        );
        registry.register(
            "fleet_reconcile_errors",
            "Reconciles that failed, by controller and reason (the error's kind)",
            reconciles.errors.clone(),
        );
        reconciles
    }

    /// `reconcile`, observed: a span `reconcile{controller, object}`, its duration, and its
    /// error's reason.
    pub fn observe<K, C, E, F, Fut>(
        &self,
        controller: &'static str,
        reconcile: F,
    ) -> impl Fn(Arc<K>, Arc<C>) -> BoxFuture<'static, Result<Action, E>> + use<K, C, E, F, Fut>
    where
        K: kube::Resource + Send + Sync + 'static,
        C: Send + Sync + 'static,
        E: std::fmt::Debug + Send + 'static,
        F: Fn(Arc<K>, Arc<C>) -> Fut,
        Fut: Future<Output = Result<Action, E>> + Send + 'static,
    {
        let reconciles = self.clone();
        move |object, ctx| {
            let key = match object.meta().namespace.as_deref() {
                Some(namespace) => {
                    format!(
                        "{namespace}/{}",
                        object.meta().name.as_deref().unwrap_or("")
                    )
                }
                None => object.meta().name.clone().unwrap_or_default(),
            };
            let span = tracing::info_span!("reconcile", controller, object = %key);
            let reconciles = reconciles.clone();
            let started = Instant::now();
            reconcile(object, ctx)
                .map(move |result| {
                    reconciles.record(controller, started, result.as_ref().err());
                    result
                })
                .instrument(span)
                .boxed()
        }
    }

    fn record<E: std::fmt::Debug>(&self, controller: &str, started: Instant, error: Option<&E>) {
        let labels = ControllerLabels {
            controller: controller.to_owned(),
        };
        self.duration
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
        if let Some(error) = error {
            self.errors
                .get_or_create(&ErrorLabels {
                    controller: controller.to_owned(),
                    reason: reason(error),
                })
                .inc();
        }
    }
}

/// An error's kind, for a label: the name of its enum variant (or type), never its message.
fn reason<E: std::fmt::Debug>(error: &E) -> String {
    let debug = format!("{error:?}");
    debug
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .next()
        .filter(|name| !name.is_empty())
        .unwrap_or("Unknown")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    #[allow(dead_code)]
    enum Failure {
        Api { code: u16 },
        NotLeading,
        Deploy(String),
    }

    #[test]
    fn reasons_are_variant_names_not_messages() {
        assert_eq!(reason(&Failure::Api { code: 500 }), "Api");
        assert_eq!(reason(&Failure::NotLeading), "NotLeading");
        assert_eq!(
            reason(&Failure::Deploy("secret stuff".to_owned())),
            "Deploy"
        );
        assert_eq!(reason(&"quoted"), "Unknown");
    }
}
