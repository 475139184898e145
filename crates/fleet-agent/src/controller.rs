//! How each role runs its reconciler: over the BundleDeployments of the cluster's namespace
//! upstream, a number at once, until its term ends.

use std::sync::Arc;

use fleet_api::BundleDeployment;
use kube::runtime::controller::{self, Action};
use kube::runtime::{Controller, watcher};

/// The BundleDeployments a role reconciles (those of the cluster's namespace upstream), how
/// many at once, and what observes its reconciles.
#[derive(Debug, Clone)]
pub struct Deployments {
    pub api: kube::Api<BundleDeployment>,
    pub workers: u16,
    pub reconciles: fleet_runtime::Reconciles,
}

/// Runs `reconcile` (observed as `name`, retried by `error_policy`) over `deployments`
/// until `stop`.
pub async fn run<C, F, Fut>(
    deployments: Deployments,
    name: &'static str,
    reconcile: F,
    error_policy: fn(Arc<BundleDeployment>, &crate::Error, Arc<C>) -> Action,
    ctx: Arc<C>,
    stop: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) where
    C: Send + Sync + 'static,
    F: Fn(Arc<BundleDeployment>, Arc<C>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Action, crate::Error>> + Send + 'static,
{
    let Deployments {
        api,
        workers,
        reconciles,
    } = deployments;
    let results = Controller::new(api, watcher::Config::default())
        .with_config(controller::Config::default().concurrency(workers))
        .graceful_shutdown_on(stop)
        .run(reconciles.observe(name, reconcile), error_policy, ctx);
    fleet_runtime::drain_controller(results).await;
}
