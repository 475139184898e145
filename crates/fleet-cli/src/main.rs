//! `fleet`: what Fleet users run to preview their repositories, built on the same libraries as
//! gitjob, the controller and the agent (`fleet-bundle`, `fleet-render`), so that a preview is
//! exactly what fleet-rs deploys.
//!
//! - `fleet apply NAME [PATH ...]`: the Bundles, written to a cluster (create, update, prune)
//!   or, with `-o FILE|-`, printed;
//! - `fleet test [-l k=v] [-g GROUP] [-N NAME] [PATH]`: the manifests such a cluster receives;
//! - `fleet target -b BUNDLE-FILE [--clusters FILE]`: the Content and BundleDeployments
//!   clusters get;
//! - `fleet deploy -i FILE [--dry-run]`: those installed as a Helm release, as the agent does.

mod apply;
mod cluster;
mod deploy_cmd;
mod target_cmd;
mod test_cmd;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "fleet", version, about = "Fleet's command line, from fleet-rs")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build the Bundles for the paths, as gitjob would; write them to a cluster or as YAML.
    Apply(Box<apply::ApplyArgs>),
    /// Print the manifests a cluster with these labels, groups and name would receive.
    Test(test_cmd::TestArgs),
    /// Print the Content and BundleDeployments that clusters would get from a Bundle file.
    Target(target_cmd::TargetArgs),
    /// Install a Content and BundleDeployment (`fleet target`'s output) as a Helm release,
    /// as the agent would; `--dry-run` prints the resources only.
    Deploy(deploy_cmd::DeployArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Apply(args) => apply::apply(&args),
        Command::Test(args) => test_cmd::test(&args),
        Command::Target(args) => target_cmd::target(&args),
        Command::Deploy(args) => deploy_cmd::deploy(&args),
    }
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
    fn labels_parse() {
        assert_eq!(
            apply::parse_label("a=b=c"),
            Ok(("a".to_owned(), "b=c".to_owned()))
        );
        assert!(apply::parse_label("=b").is_err());
        assert!(apply::parse_label("ab").is_err());
    }
}
