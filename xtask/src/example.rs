//! The example the demo and every e2e provider deploy, and the checks of what lands
//! downstream: a repository with plain manifests, a Helm chart with per-cluster values and
//! kustomize; a HelmOp from a Helm repository; a path removed from git.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use fleet_api::Bundle;
use fleet_testkit::git::GitRepoFixture;
use fleet_testkit::{wait_deleted, wait_for};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::PostParams;
use kube::{Api, Client};

const WAIT: Duration = Duration::from_secs(180);

/// A downstream cluster as the checks see it.
#[derive(Clone)]
pub struct Downstream {
    pub name: String,
    pub client: Client,
}

fn say(line: &str) {
    println!("==> {line}");
}

/// The example repository: plain manifests, a Helm chart with per-cluster values, kustomize.
pub fn repo() -> anyhow::Result<GitRepoFixture> {
    let repo = GitRepoFixture::new()?;
    repo.commit_files(
        "example apps",
        &[
            // Drift is put back (the agent failover drills change the object by hand).
            ("hello/fleet.yaml", "defaultNamespace: demo\ncorrectDrift:\n  enabled: true\n"),
            ("hello/configmap.yaml", &hello("v1")),
            // A values file, merged into the values when gitjob builds the Bundle (as Fleet).
            ("chart/fleet.yaml", "defaultNamespace: demo\nhelm:\n  releaseName: web\n  values:\n    cluster: ${ .ClusterName }\n  valuesFiles:\n    - values-fleet.yaml\n"),
            ("chart/Chart.yaml", "apiVersion: v2\nname: web\nversion: 0.1.0\n"),
            ("chart/values.yaml", "cluster: unknown\ntier: chart-default\n"),
            ("chart/values-fleet.yaml", "tier: from-values-file\n"),
            (
                "chart/templates/configmap.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-settings\ndata:\n  cluster: {{ .Values.cluster | quote }}\n  tier: {{ .Values.tier | quote }}\n",
            ),
            ("kustomize/fleet.yaml", "defaultNamespace: demo\n"),
            ("kustomize/kustomization.yaml", "resources:\n  - cm.yaml\nnamePrefix: kustomized-\n"),
            ("kustomize/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  from: kustomize\n"),
        ],
    )?;
    Ok(repo)
}

pub fn hello(version: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: hello\ndata:\n  version: {version}\n"
    )
}

/// The objects of the three paths on every downstream cluster: `hello` at `version`, the
/// chart's per-cluster value (checked to be the cluster's name when `strict`) and the value from
/// its values file, kustomize's.
pub async fn check_deployed(
    downstreams: &[Downstream],
    version: &str,
    strict: bool,
) -> anyhow::Result<()> {
    for cluster in downstreams {
        let configmaps: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), "demo");
        for (name, key, want) in [
            ("hello", "version", version.to_owned()),
            ("web-settings", "cluster", String::new()),
            ("web-settings", "tier", "from-values-file".to_owned()),
            ("kustomized-settings", "from", "kustomize".to_owned()),
        ] {
            let cm = wait_for(&configmaps, name, WAIT, |_| true)
                .await
                .with_context(|| format!("{name} in {}", cluster.name))?;
            let value = cm
                .data
                .as_ref()
                .and_then(|d| d.get(key))
                .cloned()
                .unwrap_or_default();
            if !want.is_empty() {
                ensure!(
                    value == want,
                    "{}: {name}.{key} = {value:?}, want {want:?}",
                    cluster.name
                );
            } else if strict {
                // `${ .ClusterName }`: `cluster-<hash>` for a registered cluster, the Cluster's
                // own name for an imported one; never the chart's default.
                ensure!(
                    !value.is_empty() && value != "unknown",
                    "per-cluster Helm value, got {value:?}"
                );
            }
            say(&format!(
                "{}: ConfigMap demo/{name} {key}={value}",
                cluster.name
            ));
        }
    }
    Ok(())
}

/// Waits until ConfigMap demo/hello is at `version` on every downstream cluster.
pub async fn wait_version(downstreams: &[Downstream], version: &str) -> anyhow::Result<()> {
    for cluster in downstreams {
        let configmaps: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), "demo");
        wait_for(&configmaps, "hello", WAIT, |c| {
            c.data
                .as_ref()
                .and_then(|d| d.get("version"))
                .map(String::as_str)
                == Some(version)
        })
        .await
        .with_context(|| format!("ConfigMap demo/hello at {version} on {}", cluster.name))?;
    }
    Ok(())
}

/// A path removed from the repository: its Bundle is pruned, and its objects are removed
/// from every cluster (BundleDeployments deleted, releases uninstalled by the agents).
pub async fn prune(
    upstream: &Client,
    namespace: &str,
    downstreams: &[Downstream],
    repo: &GitRepoFixture,
) -> anyhow::Result<()> {
    repo.remove("kustomize")?;
    repo.commit("remove the kustomize app")?;
    let started = Instant::now();
    let bundles: Api<Bundle> = Api::namespaced(upstream.clone(), namespace);
    wait_deleted(&bundles, "demo-kustomize", WAIT)
        .await
        .context("Bundle demo-kustomize pruned")?;
    for cluster in downstreams {
        let configmaps: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), "demo");
        wait_deleted(&configmaps, "kustomized-settings", WAIT)
            .await
            .with_context(|| format!("kustomized-settings removed from {}", cluster.name))?;
    }
    say(&format!(
        "path kustomize removed from git: Bundle pruned and its objects gone from every cluster in {:.1}s",
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// A HelmOp deploys a chart from a Helm repository (packaged and indexed with the pinned
/// helm, served over HTTP on `serve_on`) to every cluster of the workspace's `default` group.
pub async fn helmop(
    upstream: &Client,
    namespace: &str,
    downstreams: &[Downstream],
    serve_on: IpAddr,
) -> anyhow::Result<()> {
    let repo = fleet_testkit::helm_repo::HelmRepoDir::new()?;
    let server = fleet_testkit::file_server::FileServer::start_on(&repo.root(), serve_on).await?;
    repo.publish(
        "web",
        "1.2.3",
        &[(
            "cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: helmop-web\ndata:\n  chart: {{ .Chart.Version | quote }}\n",
        )],
        &server.url(),
    )?;
    let helmop: fleet_api::HelmOp = serde_saphyr::from_str(&format!(
        "apiVersion: fleet.cattle.io/v1alpha1\nkind: HelmOp\nmetadata:\n  name: greeter\n  namespace: {namespace}\nspec:\n  defaultNamespace: demo\n  helm:\n    repo: {}\n    chart: web\n    version: ^1.0\n  targets:\n  - clusterGroup: default\n",
        server.url()
    ))?;
    let started = Instant::now();
    Api::<fleet_api::HelmOp>::namespaced(upstream.clone(), namespace)
        .create(&PostParams::default(), &helmop)
        .await?;
    for cluster in downstreams {
        let configmaps: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), "demo");
        let cm = wait_for(&configmaps, "helmop-web", WAIT, |_| true)
            .await
            .with_context(|| format!("the HelmOp's chart on {}", cluster.name))?;
        let chart = cm
            .data
            .and_then(|d| d.get("chart").cloned())
            .unwrap_or_default();
        ensure!(chart == "1.2.3", "chart version {chart}");
        say(&format!(
            "{}: HelmOp greeter deployed chart web {chart} from the Helm repository",
            cluster.name
        ));
    }
    say(&format!(
        "HelmOp greeter deployed everywhere in {:.1}s",
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}
