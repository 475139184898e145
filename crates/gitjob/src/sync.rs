//! What one commit of a GitRepo becomes: where its repository is fetched from (credentials,
//! reference, TLS), the commit's tree read into Bundles as `fleet apply` reads it, and those
//! Bundles written through the reconcile's claim.

use base64::Engine as _;
use fleet_api::labels::{COMMIT, REPO_NAME};
use fleet_api::{BundleTarget, BundleTargetRestriction, GitRepo, GitRepoSpec, HelmRepoAccess};
use fleet_bundle::chart_credentials::AccessByPath;
use fleet_bundle::files::SizeLimits;
use fleet_bundle::read::{ApplyOptions, TargetsFile};
use fleet_bundle::remote_charts::ChartAccess;
use fleet_bundle::repo::{ExplicitBundle, Scan, read_repo};
pub use fleet_election::shards::Claims;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{Api, Resource, ResourceExt};

use crate::context::Context;
use crate::git::{Reference, Source};
use fleet_runtime::bundle_store::Claimed;

/// Where and how to fetch the GitRepo's repository: its URL and reference, the credentials
/// of its `clientSecretName`, its TLS settings; or why they cannot be had.
pub(crate) async fn source(
    spec: &GitRepoSpec,
    secrets: &Api<Secret>,
    namespace: &str,
) -> Result<Source, String> {
    let auth = crate::credentials::load(secrets, namespace, spec.client_secret_name.as_deref())
        .await
        .map_err(|e| e.to_string())?;
    let ca_bundle = match spec.ca_bundle.as_deref().filter(|b| !b.trim().is_empty()) {
        None => None,
        Some(encoded) => Some(
            base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .map_err(|e| format!("caBundle is not base64: {e}"))?,
        ),
    };
    Ok(Source {
        url: spec.repo.clone(),
        reference: reference(spec),
        auth,
        insecure_skip_tls_verify: spec.insecure_skip_tls_verify,
        ca_bundle,
    })
}

/// How the GitRepo's charts are downloaded when its Bundles are built, as in Fleet: per
/// bundle path from `helmSecretNameForPaths` (its `secrets-path.yaml`) when set, else from
/// `helmSecretName` (`username`, `password`, `cacerts`, `ssh-privatekey`, `known_hosts`);
/// credentials go only to URLs `helmRepoURLRegex` matches (with per-path credentials too,
/// where Fleet forwards none).
async fn chart_access(
    spec: &GitRepoSpec,
    client: &kube::Client,
    namespace: &str,
) -> Result<(ChartAccess, Option<AccessByPath>), String> {
    let url_regex = spec.helm_repo_url_regex.clone();
    let secret = |field: &'static str, name: Option<String>| {
        let secrets = Api::<Secret>::namespaced(client.clone(), namespace);
        async move {
            let Some(name) = name.filter(|n| !n.is_empty()) else {
                return Ok(None);
            };
            let secret = secrets
                .get_opt(&name)
                .await
                .map_err(|e| format!("reading {field} {namespace}/{name}: {e}"))?
                .ok_or_else(|| format!("{field} {namespace}/{name} not found"))?;
            Ok::<_, String>(Some((name, secret.data.unwrap_or_default())))
        }
    };
    let for_paths = secret(
        "helmSecretNameForPaths",
        spec.helm_secret_name_for_paths.clone(),
    );
    if let Some((name, data)) = for_paths.await? {
        let text = data
            .get("secrets-path.yaml")
            .map(|v| String::from_utf8_lossy(&v.0).into_owned())
            .ok_or_else(|| format!("helmSecretNameForPaths {name} has no secrets-path.yaml"))?;
        let by_path = AccessByPath::from_yaml(&text, url_regex.as_deref())
            .map_err(|e| format!("helmSecretNameForPaths {name}: {e}"))?;
        return Ok((ChartAccess::default(), Some(by_path)));
    }
    let Some((_, data)) = secret("helmSecretName", spec.helm_secret_name.clone()).await? else {
        let access = ChartAccess {
            url_regex,
            ..ChartAccess::default()
        };
        return Ok((access, None));
    };
    let bytes = |key: &str| data.get(key).map(|v| v.0.clone()).filter(|v| !v.is_empty());
    let access = ChartAccess {
        access: HelmRepoAccess::from_secret_data(&data, false),
        url_regex,
        plain_http: false,
        ssh_private_key: bytes("ssh-privatekey"),
        ssh_known_hosts: bytes("known_hosts"),
    };
    Ok((access, None))
}

/// Fetches `commit`, reads its Bundles and writes them.
pub(crate) async fn sync(
    gitrepo: &GitRepo,
    allowed_target_namespaces: Option<LabelSelector>,
    source: &Source,
    commit: &str,
    ctx: &Context,
    claim: &Claimed,
) -> Result<Vec<String>, String> {
    let namespace = gitrepo.namespace().unwrap_or_default();
    let name = gitrepo.name_any();
    let cache_root = ctx.settings.cache_dir.join("repositories");
    let checkouts = ctx.settings.cache_dir.join("checkouts");
    for dir in [&cache_root, &checkouts] {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let fetching = source.clone();
    let wanted = commit.to_owned();
    let fetch_root = cache_root.clone();
    let repo_path = ctx
        .git(&source.url, move |cancel| {
            crate::submodules::fetch(&fetch_root, &fetching, &wanted, cancel)
        })
        .await
        .map_err(|e| e.to_string())?;

    let mut opts = apply_options(gitrepo, commit);
    opts.limits = ctx.settings.limits;
    opts.helm.clone_from(&ctx.settings.helm);
    if opts.helm.is_some() {
        (opts.chart_access, opts.chart_access_by_path) =
            chart_access(&gitrepo.spec, &ctx.client, &namespace).await?;
    }
    opts.allowed_target_namespace_selector = allowed_target_namespaces;
    let scan = scan(&gitrepo.spec);
    let wanted = commit.to_owned();
    let bundle_namespace = namespace.clone();
    let repo_name = name.clone();
    let url = source.url.clone();
    let bundles = tokio::task::spawn_blocking(move || {
        let tree = tempfile::tempdir_in(&checkouts).map_err(|e| format!("checkout: {e}"))?;
        let max_blob = opts.limits.file;
        crate::submodules::export(
            &cache_root,
            &repo_path,
            &url,
            &wanted,
            tree.path(),
            max_blob,
        )
        .map_err(|e| e.to_string())?;
        let bundles = read_repo(&repo_name, &bundle_namespace, tree.path(), "", &scan, &opts)
            .map_err(|e| e.to_string())?;
        Ok::<_, String>((bundles, unmatched_paths(tree.path(), &scan)))
    })
    .await
    .map_err(|e| format!("reading the repository: {e}"))??;
    let (bundles, unmatched) = bundles;
    if !unmatched.is_empty() {
        tracing::warn!(gitrepo = %name, %namespace, paths = %unmatched.join(", "), "paths entries match no directory");
    }

    let owner = gitrepo.controller_owner_ref(&());
    let report = claim
        .store
        .sync(&namespace, &name, owner, bundles)
        .await
        .map_err(|e| e.to_string())?;
    ctx.metrics.bundle_writes.inc_by(report.writes() as u64);
    tracing::debug!(gitrepo = %name, %namespace, created = report.created.len(), updated = report.updated.len(), deleted = report.deleted.len(), unchanged = report.unchanged.len(), "bundles written");
    Ok(unmatched)
}

/// The `paths` entries that find no bundle directory in the tree (each looked up alone).
fn unmatched_paths(root: &std::path::Path, scan: &Scan) -> Vec<String> {
    let Scan::Paths(patterns) = scan else {
        return Vec::new();
    };
    patterns
        .iter()
        .filter(|pattern| {
            fleet_bundle::discovery::discover(root, std::slice::from_ref(pattern))
                .is_ok_and(|dirs| dirs.is_empty())
        })
        .cloned()
        .collect()
}

fn reference(spec: &GitRepoSpec) -> Reference {
    match (&spec.revision, &spec.branch) {
        (Some(revision), _) if !revision.is_empty() => Reference::Revision(revision.clone()),
        (_, Some(branch)) if !branch.is_empty() => Reference::Branch(branch.clone()),
        // Fleet's default branch.
        _ => Reference::Branch("master".to_owned()),
    }
}

fn scan(spec: &GitRepoSpec) -> Scan {
    if spec.bundles.is_empty() {
        Scan::Paths(spec.paths.clone())
    } else {
        Scan::Explicit(
            spec.bundles
                .iter()
                .map(|b| ExplicitBundle {
                    base: b.base.clone(),
                    options: b.options.clone(),
                })
                .collect(),
        )
    }
}

/// What Fleet's gitjob passes to `fleet apply` for this GitRepo.
pub fn apply_options(gitrepo: &GitRepo, commit: &str) -> ApplyOptions {
    let spec = &gitrepo.spec;
    let mut labels = gitrepo.labels().clone();
    labels.insert(REPO_NAME.to_owned(), gitrepo.name_any());
    labels.insert(COMMIT.to_owned(), commit.to_owned());
    // Fleet writes the GitRepo's targets both as targets and as restrictions.
    let targets = (!spec.targets.is_empty()).then(|| TargetsFile {
        targets: spec
            .targets
            .iter()
            .map(|t| BundleTarget {
                name: t.name.clone(),
                clusters: t.clusters.clone(),
                ..BundleTarget::default()
            })
            .collect(),
        target_restrictions: spec
            .targets
            .iter()
            .map(|t| BundleTargetRestriction {
                name: t.name.clone(),
                clusters: t.clusters.clone(),
            })
            .collect(),
    });
    ApplyOptions {
        labels,
        service_account: spec.service_account.clone(),
        targets,
        target_namespace: spec.target_namespace.clone(),
        paused: spec.paused,
        sync_generation: spec.force_sync_generation,
        keep_resources: spec.keep_resources,
        delete_namespace: spec.delete_namespace,
        correct_drift: spec.correct_drift.clone(),
        compress: false,
        allowed_target_namespace_selector: None,
        limits: SizeLimits::default(),
        // The checkout: `read_repo` sets it (values files never come from outside it).
        root: None,
        // gitjob's `--helm`, and the GitRepo's Helm credentials (read by `sync`).
        helm: None,
        chart_access: Default::default(),
        chart_access_by_path: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_wins_over_branch_and_master_is_the_default() {
        let mut spec = GitRepoSpec::default();
        assert_eq!(reference(&spec), Reference::Branch("master".to_owned()));
        spec.branch = Some("main".to_owned());
        assert_eq!(reference(&spec), Reference::Branch("main".to_owned()));
        spec.revision = Some("v1".to_owned());
        assert_eq!(reference(&spec), Reference::Revision("v1".to_owned()));
    }
}
