//! `fleet`: what Fleet users run to preview their repositories, built on the same library as
//! gitjob (`fleet-bundle`), so that a preview is exactly what gitjob produces.
//!
//! Today: `fleet apply -o FILE|- NAME [PATH ...]` prints the Bundles. Writing them to a cluster,
//! `fleet test` and `fleet target` follow (issue 5).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use fleet_api::{BundleTarget, BundleTargetRestriction, CorrectDrift};
use fleet_bundle::discovery::{bundle_name, discover};
use fleet_bundle::read::{ApplyOptions, TargetsFile, read_bundle};
use serde::Deserialize;

#[derive(Debug, Parser)]
#[command(name = "fleet", version, about = "Fleet's command line, from fleet-rs")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build the Bundles for the paths, as gitjob would, and write them as YAML.
    Apply(ApplyArgs),
}

#[derive(Debug, clap::Args)]
struct ApplyArgs {
    /// Write the Bundles to this file (`-` for standard output) instead of a cluster.
    #[arg(short = 'o', long = "output")]
    output: Option<String>,
    /// Namespace of the Bundles.
    #[arg(short = 'n', long, default_value = "fleet-local")]
    namespace: String,
    /// Labels for every Bundle (`key=value`, repeatable).
    #[arg(short = 'l', long = "label", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// A YAML file with `targets` and `targetRestrictions` (the GitRepo's targets).
    #[arg(long)]
    targets_file: Option<PathBuf>,
    /// Mark the Bundles paused.
    #[arg(long)]
    paused: bool,
    /// forceSyncGeneration for the Bundles.
    #[arg(long, default_value_t = 0)]
    sync_generation: i64,
    /// ServiceAccount the agent deploys as.
    #[arg(long)]
    service_account: Option<String>,
    /// Deploy every resource into this namespace.
    #[arg(long)]
    target_namespace: Option<String>,
    #[arg(long)]
    keep_resources: bool,
    #[arg(long)]
    delete_namespace: bool,
    /// Correct drift on deployed resources.
    #[arg(long)]
    correct_drift: bool,
    #[arg(long)]
    correct_drift_force: bool,
    #[arg(long)]
    correct_drift_keep_fail_history: bool,
    /// Compress every resource (`base64+gz`).
    #[arg(long)]
    compress: bool,
    /// The bundle name prefix (a GitRepo's name).
    name: String,
    /// Directories to read (default: the current directory).
    paths: Vec<PathBuf>,
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("invalid label {text:?}: expected key=value"))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TargetsYaml {
    #[serde(default)]
    targets: Vec<BundleTarget>,
    #[serde(default)]
    target_restrictions: Vec<BundleTargetRestriction>,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Apply(args) => apply(&args),
    }
}

fn options(args: &ApplyArgs) -> anyhow::Result<ApplyOptions> {
    let mut labels: BTreeMap<String, String> = args.labels.iter().cloned().collect();
    if let Ok(commit) = std::env::var("COMMIT")
        && !commit.is_empty()
    {
        labels.insert(fleet_api::labels::COMMIT.to_owned(), commit);
    }
    let targets = match &args.targets_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let parsed: TargetsYaml = serde_saphyr::from_str(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            Some(TargetsFile {
                targets: parsed.targets,
                target_restrictions: parsed.target_restrictions,
            })
        }
        None => None,
    };
    Ok(ApplyOptions {
        labels,
        service_account: args.service_account.clone(),
        targets,
        target_namespace: args.target_namespace.clone(),
        paused: args.paused,
        sync_generation: args.sync_generation,
        keep_resources: args.keep_resources,
        delete_namespace: args.delete_namespace,
        correct_drift: args.correct_drift.then_some(CorrectDrift {
            enabled: true,
            force: args.correct_drift_force,
            keep_fail_history: args.correct_drift_keep_fail_history,
        }),
        compress: args.compress,
    })
}

/// `base` joined with a discovered relative path, as the bundle's path for naming.
fn bundle_path(base: &Path, relative: &str) -> String {
    let base = base.to_string_lossy();
    let base = base.trim_start_matches("./").trim_end_matches('/');
    match (base, relative) {
        ("" | ".", rel) => rel.to_owned(),
        (base, ".") => base.to_owned(),
        (base, rel) => format!("{base}/{rel}"),
    }
}

fn apply(args: &ApplyArgs) -> anyhow::Result<()> {
    let Some(output) = &args.output else {
        bail!("writing Bundles to a cluster is not implemented yet: use -o FILE or -o -");
    };
    let opts = options(args)?;
    let default_paths = [PathBuf::from(".")];
    let paths = if args.paths.is_empty() {
        &default_paths[..]
    } else {
        &args.paths
    };
    let mut documents = String::new();
    for base in paths {
        if !base.is_dir() {
            bail!("{}: not a directory", base.display());
        }
        let dirs = discover(base, &[]).map_err(|e| anyhow::anyhow!("{}: {e}", base.display()))?;
        for dir in dirs {
            let path = bundle_path(base, &dir.path);
            let name = bundle_name(&args.name, &path);
            let options_file = dir.options_file.as_ref().map(|f| base.join(f));
            let mut bundle =
                read_bundle(&name, &base.join(&dir.path), options_file.as_deref(), &opts)?;
            bundle.metadata.namespace = Some(args.namespace.clone());
            documents.push_str("---\n");
            documents.push_str(&serde_saphyr::to_string(&bundle)?);
        }
    }
    // Nothing is written when anything failed above.
    if output == "-" {
        std::io::stdout().lock().write_all(documents.as_bytes())?;
    } else {
        std::fs::write(output, documents).with_context(|| format!("writing {output}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn bundle_paths_join_like_fleet() {
        assert_eq!(bundle_path(Path::new("."), "."), ".");
        assert_eq!(
            bundle_path(Path::new("multi-cluster/hello"), "."),
            "multi-cluster/hello"
        );
        assert_eq!(bundle_path(Path::new("./repo/"), "app"), "repo/app");
        assert_eq!(bundle_path(Path::new("."), "app/dev"), "app/dev");
    }

    #[test]
    fn labels_parse() {
        assert_eq!(parse_label("a=b=c"), Ok(("a".to_owned(), "b=c".to_owned())));
        assert!(parse_label("=b").is_err());
        assert!(parse_label("ab").is_err());
    }
}
