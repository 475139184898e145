//! What a HelmOp becomes, decided without I/O: its one Bundle, with the chart version the
//! repository resolved, and when to look at the repository again.

use std::time::Duration;

use fleet_api::{Bundle, BundleTarget, ClusterSelection, HelmOp, HelmOpOptions};
use kube::ResourceExt;

/// The Bundle of `helmop` with chart `version` (empty: as the spec says, for OCI and URL
/// charts helm resolves). The HelmOp's labels and `spec.labels` label it; its Helm access
/// (`helmSecretName`, `insecureSkipTLSVerify`) goes with it, so that agents download the
/// chart as helmops read the index; with no targets it targets the group `default`, as
/// Fleet's does.
pub fn bundle(helmop: &HelmOp, version: &str) -> Bundle {
    let mut bundle = Bundle::new(&helmop.name_any(), helmop.spec.bundle.clone());
    let mut labels = helmop.spec.labels.clone();
    labels.extend(helmop.labels().clone());
    bundle.metadata.labels = Some(labels);
    if let Some(options) = bundle.spec.options.helm.as_mut() {
        options.version = Some(version.to_owned()).filter(|v| !v.is_empty());
    }
    let secret = helmop
        .spec
        .helm_secret_name
        .clone()
        .filter(|s| !s.is_empty());
    if secret.is_some() || helmop.spec.insecure_skip_tls_verify {
        bundle.spec.helm_op_options = Some(HelmOpOptions {
            helm_op_secret_name: secret,
            helm_op_insecure_skip_tls_verify: helmop.spec.insecure_skip_tls_verify,
            helm_op_ca_bundle: None,
        });
    }
    if bundle.spec.targets.is_empty() {
        bundle.spec.targets.push(BundleTarget {
            name: Some("default".to_owned()),
            clusters: ClusterSelection {
                cluster_group: Some("default".to_owned()),
                ..Default::default()
            },
            ..Default::default()
        });
    }
    bundle
}

/// When to look at the repository again: every `pollingInterval`; without one, in 30 s after
/// a failure, and on the next change after a success.
pub fn recheck(helmop: &HelmOp, failed: bool) -> Option<Duration> {
    let polling = helmop
        .spec
        .polling_interval
        .as_deref()
        .and_then(|p| fleet_api::duration::parse_go_duration(p).ok())
        .filter(|d| !d.is_zero());
    match (polling, failed) {
        (Some(interval), _) => Some(interval),
        (None, true) => Some(Duration::from_secs(30)),
        (None, false) => None,
    }
}

#[cfg(test)]
mod tests {
    use fleet_api::{HelmOpSpec, HelmOptions};

    use super::*;

    fn helmop(yaml: &str) -> HelmOp {
        serde_saphyr::from_str(&format!(
            "apiVersion: fleet.cattle.io/v1alpha1\nkind: HelmOp\nmetadata:\n  name: web\n  namespace: fleet-local\n  labels:\n    team: a\n{yaml}"
        ))
        .expect("helmop")
    }

    #[test]
    fn the_bundle_carries_the_version_labels_access_and_default_target() {
        let op = helmop(
            "spec:\n  labels:\n    tier: web\n  helmSecretName: creds\n  helm:\n    repo: https://charts.example\n    chart: web\n    version: '^1'\n",
        );
        let bundle = bundle(&op, "1.2.3");
        let helm = bundle.spec.options.helm.clone().unwrap_or_default();
        assert_eq!(helm.version.as_deref(), Some("1.2.3"));
        assert_eq!(helm.chart.as_deref(), Some("web"));
        assert_eq!(bundle.labels().get("team").map(String::as_str), Some("a"));
        assert_eq!(bundle.labels().get("tier").map(String::as_str), Some("web"));
        let access = bundle.spec.helm_op_options.clone().unwrap_or_default();
        assert_eq!(access.helm_op_secret_name.as_deref(), Some("creds"));
        assert_eq!(bundle.spec.targets.len(), 1);
        assert_eq!(
            bundle.spec.targets[0].clusters.cluster_group.as_deref(),
            Some("default")
        );
    }

    #[test]
    fn an_unresolved_version_and_own_targets_are_kept() {
        let mut spec = HelmOpSpec::default();
        spec.bundle.options.helm = Some(HelmOptions {
            chart: Some("oci://registry/web".to_owned()),
            ..Default::default()
        });
        spec.bundle.targets.push(BundleTarget {
            name: Some("prod".to_owned()),
            ..Default::default()
        });
        let op = HelmOp::new("web", spec);
        let bundle = bundle(&op, "");
        let helm = bundle.spec.options.helm.clone().unwrap_or_default();
        assert_eq!(helm.version, None);
        assert_eq!(bundle.spec.targets[0].name.as_deref(), Some("prod"));
        assert_eq!(bundle.spec.helm_op_options, None);
    }

    #[test]
    fn the_repository_is_checked_again_as_polling_and_failures_say() {
        let with = |interval: &str| helmop(&format!("spec:\n  pollingInterval: {interval}\n"));
        let none = helmop("spec: {}\n");
        let cases = [
            (with("5m"), false, Some(300)),
            (with("5m"), true, Some(300)),
            (with("0s"), false, None),
            (none.clone(), true, Some(30)),
            (none, false, None),
        ];
        for (op, failed, seconds) in cases {
            assert_eq!(
                recheck(&op, failed).map(|d| d.as_secs()),
                seconds,
                "{:?} failed={failed}",
                op.spec.polling_interval
            );
        }
    }
}
