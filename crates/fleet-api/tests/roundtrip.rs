//! Fleet-documentation-shaped YAML parses into the Rust types and back without losing or
//! changing a field.

mod common;

use common::{OBJECT_FIXTURES, fixture, fixture_value, omit_empty};
use fleet_api::{
    Bundle, BundleNamespaceMapping, Cluster, ClusterGroup, ClusterRegistrationToken, FleetYaml,
    GitRepo, GitRepoRestriction, HelmOp, TargetCustomizationMode,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn round_trip<T: DeserializeOwned + Serialize>(name: &str) -> T {
    let typed: T = serde_saphyr::from_str(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let back = serde_json::to_value(&typed).expect("serialise");
    let original = fixture_value(name);
    assert_eq!(
        omit_empty(&back),
        omit_empty(&original),
        "{name} changed in a round trip through the Rust types"
    );
    typed
}

#[test]
fn every_kind_round_trips() {
    for (file, kind) in OBJECT_FIXTURES {
        match *kind {
            "GitRepo" => drop(round_trip::<GitRepo>(file)),
            "HelmOp" => drop(round_trip::<HelmOp>(file)),
            "ClusterGroup" => drop(round_trip::<ClusterGroup>(file)),
            "ClusterRegistrationToken" => drop(round_trip::<ClusterRegistrationToken>(file)),
            "Cluster" => drop(round_trip::<Cluster>(file)),
            "Bundle" => drop(round_trip::<Bundle>(file)),
            "GitRepoRestriction" => drop(round_trip::<GitRepoRestriction>(file)),
            "BundleNamespaceMapping" => drop(round_trip::<BundleNamespaceMapping>(file)),
            other => panic!("no type for {other}"),
        }
    }
}

#[test]
fn fleet_yaml_round_trips_and_means_what_it_says() {
    let fleet: FleetYaml = round_trip("fleet.yaml");
    assert_eq!(fleet.name.as_deref(), Some("guestbook"));
    let options = &fleet.bundle.options;
    assert_eq!(options.default_namespace.as_deref(), Some("guestbook"));
    assert_eq!(options.target_namespace.as_deref(), Some("guestbook-prod"));
    let helm = options.helm.as_ref().expect("helm");
    assert_eq!(
        helm.version.as_deref(),
        Some("1.2.3"),
        "a version stays a string"
    );
    assert_eq!(helm.values_from.len(), 2);
    assert_eq!(
        fleet.bundle.target_customization_mode,
        Some(TargetCustomizationMode::FirstMatch)
    );
    assert_eq!(fleet.target_customizations.len(), 3);
    assert!(fleet.target_customizations[2].do_not_deploy);
    assert_eq!(
        fleet.target_customizations[0]
            .options
            .kustomize
            .as_ref()
            .and_then(|k| k.dir.as_deref()),
        Some("overlays/dev")
    );
    assert_eq!(fleet.bundle.depends_on.len(), 2);
    assert_eq!(fleet.override_targets.len(), 1);
}

#[test]
fn fleet_yaml_errors_name_the_line() {
    let err = FleetYaml::from_yaml("helm:\n  values:\n    a: 1\n  timeoutSeconds: soon\n")
        .expect_err("timeoutSeconds must be a number");
    let message = err.to_string();
    assert_eq!(err.line, Some(4), "{message}");
    assert!(
        message.contains("helm.timeoutSeconds: expected an integer, got \"soon\""),
        "{message}"
    );
    let syntax = FleetYaml::from_yaml("helm: [unclosed\n").expect_err("bad YAML");
    assert!(syntax.to_string().contains("line"), "{syntax}");
    assert_eq!(
        FleetYaml::from_yaml("").expect("empty is fine"),
        FleetYaml::default()
    );
}

#[test]
fn checked_in_crds_are_up_to_date() {
    let checked_in = include_str!("../../../charts/fleet/templates/crds.yaml");
    let generated = fleet_api::crds_chart_template().expect("CRDs serialise");
    assert!(
        checked_in == generated,
        "charts/fleet/templates/crds.yaml is out of date: run `cargo xtask crds`"
    );
}

#[test]
fn crds_have_fleets_names_categories_and_optional_spec() {
    let crds = fleet_api::crds();
    let names: Vec<_> = crds
        .iter()
        .filter_map(|c| c.metadata.name.clone())
        .collect();
    assert_eq!(
        names,
        [
            "bundledeployments.fleet.cattle.io",
            "bundlenamespacemappings.fleet.cattle.io",
            "bundles.fleet.cattle.io",
            "clustergroups.fleet.cattle.io",
            "clusterregistrations.fleet.cattle.io",
            "clusterregistrationtokens.fleet.cattle.io",
            "clusters.fleet.cattle.io",
            "contents.fleet.cattle.io",
            "gitreporestrictions.fleet.cattle.io",
            "gitrepos.fleet.cattle.io",
            "helmops.fleet.cattle.io",
        ]
    );
    let in_fleet_category: Vec<_> = crds
        .iter()
        .filter(|c| {
            c.spec
                .names
                .categories
                .as_ref()
                .is_some_and(|cats| cats.iter().any(|cat| cat == "fleet"))
        })
        .map(|c| c.spec.names.kind.clone())
        .collect();
    assert_eq!(in_fleet_category, ["ClusterGroup", "GitRepo", "HelmOp"]);
    for crd in &crds {
        let schema = serde_json::to_value(&crd.spec.versions[0].schema).expect("schema");
        let required = &schema["openAPIV3Schema"]["required"];
        let spec_required = required
            .as_array()
            .is_some_and(|r| r.contains(&Value::from("spec")));
        assert_eq!(
            spec_required,
            crd.spec.names.kind == "GitRepo",
            "{}: spec is optional as in Fleet, unless an empty spec is invalid",
            crd.spec.names.kind
        );
    }
}
