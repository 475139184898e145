//! `fleet deploy`, as Fleet's: a Content and a BundleDeployment (what `fleet target` prints)
//! installed into the cluster of the kubeconfig as a Helm release, the way the agent installs
//! it (the same `fleet_deployer`), or with `--dry-run` rendered only; either way the
//! release's resources are printed as a YAML list. The BundleDeployment and Content
//! themselves are not written anywhere.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{Context, bail};
use fleet_api::{BundleDeployment, Content};
use fleet_deployer::{Deployer, Resolved};
use fleet_render::render::{Input, Tools, render};
use fleet_render::target::ClusterInfo;
use kube::ResourceExt;

use crate::cluster::ToolArgs;

/// The namespace a chart goes into when neither the BundleDeployment nor `-n` says (Fleet's).
const DEFAULT_NAMESPACE: &str = "default";

#[derive(Debug, clap::Args)]
pub struct DeployArgs {
    /// The YAML file holding the Content and the BundleDeployment (in any order).
    #[arg(short = 'i', long = "input-file")]
    input_file: PathBuf,
    /// Print the resources that would be deployed, but do not deploy them.
    #[arg(short = 'd', long)]
    dry_run: bool,
    /// The default namespace: the chart is deployed into it unless the BundleDeployment's
    /// options name one.
    #[arg(short = 'n', long, default_value = DEFAULT_NAMESPACE)]
    namespace: String,
    /// For dry runs, the Kubernetes version to assume when checking charts' `kubeVersion`
    /// constraints (and `.Capabilities.KubeVersion`).
    #[arg(long)]
    kube_version: Option<String>,
    /// Kubeconfig of the cluster to deploy to.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    #[command(flatten)]
    tools: ToolArgs,
}

pub fn deploy(args: &DeployArgs) -> anyhow::Result<()> {
    let (content, mut bd) = read_input(&args.input_file)?;
    let options = &mut bd.spec.options;
    if options
        .default_namespace
        .as_deref()
        .is_none_or(str::is_empty)
    {
        options.default_namespace = Some(args.namespace.clone());
    }
    let files = fleet_deployer::content::files(&content)?;
    let tools = Tools {
        helm: args.tools.helm.clone(),
        kustomize: args.tools.kustomize.clone(),
        kube_version: args.kube_version.clone().filter(|_| args.dry_run),
    };
    let name = bd.name_any();
    let cluster = ClusterInfo::default();
    let resources = if args.dry_run {
        let input = Input {
            bundle: &name,
            files: &files,
            options: &bd.spec.options,
            cluster: &cluster,
        };
        render(input, &tools).with_context(|| format!("rendering {name}"))?
    } else {
        let deployer = Deployer {
            tools,
            kubeconfig: kubeconfig(args.kubeconfig.clone())?,
        };
        let id = bd.spec.deployment_id.clone().unwrap_or_default();
        let options = &bd.spec.options;
        let deployed = deployer
            .deploy(&name, &id, options, &files, &cluster, &Resolved::default())
            .with_context(|| format!("deploying {name}"))?;
        eprintln!("deployed release {}", deployed.release);
        deployer.manifest(&deployed.release)?
    };
    let text = serde_saphyr::to_string(&resources)?;
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(())
}

/// The Content and the BundleDeployment of a YAML stream (other kinds are ignored).
fn read_input(path: &PathBuf) -> anyhow::Result<(Content, BundleDeployment)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let documents: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let (mut content, mut bd) = (None, None);
    for document in documents {
        let kind = document
            .get("kind")
            .and_then(|k| k.as_str())
            .unwrap_or("")
            .to_owned();
        let invalid = |e: serde_json::Error| anyhow::anyhow!("{}: {kind}: {e}", path.display());
        match kind.as_str() {
            "Content" => content = Some(serde_json::from_value(document).map_err(invalid)?),
            "BundleDeployment" => bd = Some(serde_json::from_value(document).map_err(invalid)?),
            _ => {}
        }
    }
    match (content, bd) {
        (Some(content), Some(bd)) => Ok((content, bd)),
        (None, _) => bail!("failed to read content resource from {}", path.display()),
        (_, None) => bail!(
            "failed to read bundledeployment resource from {}",
            path.display()
        ),
    }
}

/// The kubeconfig helm uses: the one given, else `~/.kube/config` as kubectl finds it.
fn kubeconfig(given: Option<PathBuf>) -> anyhow::Result<Option<PathBuf>> {
    if given.is_some() {
        return Ok(given);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from);
    match home.map(|h| h.join(".kube/config")).filter(|p| p.is_file()) {
        Some(path) => Ok(Some(path)),
        None => bail!("no kubeconfig: pass --kubeconfig or set KUBECONFIG"),
    }
}
