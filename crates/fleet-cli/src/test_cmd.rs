//! `fleet test`: the manifests a cluster with the given name, labels and groups would receive
//! from the bundles of a directory, with target customizations applied and charts and
//! kustomizations rendered by the real tools, as one YAML stream.
//!
//! As Fleet's `fleet test` (`internal/cmd/cli/match`): with none of `-g`, `-l`, `-L` and `-t`
//! the cluster is in group `default`; `-t` takes a target by name; `# Matched: <targets>` goes
//! to stderr, the objects to stdout; when nothing matches it fails with `no match found`.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{Context, bail};
use fleet_bundle::read::{ApplyOptions, decode_resources};
use fleet_bundle::repo::{Scan, read_repo};
use fleet_render::render::{Input, Tools, render};
use fleet_render::target::{match_cluster, match_target};
use kube::ResourceExt;

use crate::cluster::{ClusterArgs, ToolArgs};

#[derive(Debug, clap::Args)]
pub struct TestArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(flatten)]
    tools: ToolArgs,
    /// Print only which bundles match, not their manifests.
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Print the Bundles instead of matching and rendering them.
    #[arg(short = 'b', long)]
    print_bundle: bool,
    /// Explicit target to match (by name), instead of the cluster's flags.
    #[arg(short = 't', long)]
    target: Option<String>,
    /// The directory to read (default: the current directory).
    path: Option<PathBuf>,
}

pub fn test(args: &TestArgs) -> anyhow::Result<()> {
    let path = args.path.clone().unwrap_or_else(|| PathBuf::from("."));
    if !path.is_dir() {
        bail!("{}: not a directory", path.display());
    }
    let prefix = path.to_string_lossy();
    let bundles = read_repo(
        "test",
        "fleet-local",
        &path,
        &prefix,
        &Scan::Paths(Vec::new()),
        &ApplyOptions::default(),
    )?;
    if args.print_bundle {
        return crate::apply::write_yaml("-", &bundles);
    }
    let cluster = args.cluster_info();
    let tools = Tools {
        helm: args.tools.helm.clone(),
        kustomize: args.tools.kustomize.clone(),
        kube_version: None,
    };
    let mut out = String::new();
    let mut matched = 0;
    for bundle in &bundles {
        let name = bundle.name_any();
        let found = match &args.target {
            Some(target) => match_target(&bundle.spec, target),
            None => {
                match_cluster(&bundle.spec, &cluster).with_context(|| format!("bundle {name}"))?
            }
        };
        let Some(found) = found else {
            if bundles.len() > 1 {
                eprintln!("# Bundle {name}: no match");
            }
            continue;
        };
        matched += 1;
        let bundle_of = if bundles.len() > 1 {
            format!("Bundle {name}: ")
        } else {
            String::new()
        };
        eprintln!("# {bundle_of}Matched: {}", found.targets.join(", "));
        if args.quiet {
            continue;
        }
        let files = decode_resources(&bundle.spec.resources)?;
        let input = Input {
            bundle: &name,
            files: &files,
            options: &found.options,
            cluster: &cluster,
        };
        let documents = render(input, &tools).with_context(|| format!("bundle {name}"))?;
        append_yaml(&mut out, &documents)?;
    }
    if matched == 0 {
        bail!("no match found");
    }
    std::io::stdout().lock().write_all(out.as_bytes())?;
    Ok(())
}

impl TestArgs {
    /// The cluster to match: as the flags describe it; with none of `-g/-l/-L/-t`, a member of
    /// the group `default`, as Fleet's CLI takes it.
    fn cluster_info(&self) -> fleet_render::target::ClusterInfo {
        let mut cluster = self.cluster.cluster();
        if self.cluster.groups.is_empty()
            && self.cluster.labels.is_empty()
            && self.cluster.group_labels.is_empty()
            && self.target.is_none()
        {
            cluster.groups.push(fleet_render::target::GroupInfo {
                name: "default".to_owned(),
                labels: Default::default(),
            });
        }
        cluster
    }
}

/// Appends `documents` to `out` as a YAML stream.
fn append_yaml(out: &mut String, documents: &[serde_json::Value]) -> anyhow::Result<()> {
    for document in documents {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(document)?);
        if !out.ends_with('\n') {
            out.push('\n');
        }
    }
    Ok(())
}
