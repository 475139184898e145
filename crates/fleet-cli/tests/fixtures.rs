//! The `fleet` binary on fixture repositories (`tests/fixtures/<name>/repo`), compared with
//! the expected outputs checked in beside them (`expected/*.yaml`) as YAML documents: values,
//! not text, and in any order. Helm and kustomize are the real, pinned binaries.
//!
//! After an intended change of output, regenerate with `FLEET_UPDATE_EXPECTED=1 cargo test -p
//! fleet-cli --test fixtures` and review the diff.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use fleet_testkit::binaries::{Tool, ensure};
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Runs `fleet` in `dir` with the pinned helm and kustomize.
fn fleet(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fleet"))
        .current_dir(dir)
        .env("FLEET_HELM", ensure(Tool::Helm).expect("helm"))
        .env(
            "FLEET_KUSTOMIZE",
            ensure(Tool::Kustomize).expect("kustomize"),
        )
        .env("COMMIT", "0123456789abcdef0123456789abcdef01234567")
        .env("RUST_BACKTRACE", "0")
        .args(args)
        .output()
        .expect("fleet runs")
}

/// The YAML documents of `text`, sorted (Fleet's outputs are unordered where it matters).
fn documents(text: &str) -> Vec<Value> {
    let mut docs: Vec<Value> =
        serde_saphyr::from_multiple(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    docs.retain(|d| !d.is_null());
    docs.sort_by_key(|d| d.to_string());
    docs
}

/// Runs `fleet args` in the fixture's repository and compares standard output with
/// `expected/<expected>.yaml`.
fn check(fixture: &str, expected: &str, args: &[&str]) {
    let repo = fixtures().join(fixture).join("repo");
    let output = fleet(&repo, args);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "fleet {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let path = fixtures()
        .join(fixture)
        .join("expected")
        .join(format!("{expected}.yaml"));
    if std::env::var_os("FLEET_UPDATE_EXPECTED").is_some() {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, stdout.as_bytes()).expect("write expected");
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        documents(&stdout),
        documents(&want),
        "fleet {args:?} differs from {}\n{stdout}",
        path.display()
    );
}

#[test]
fn plain_manifests_become_one_bundle() {
    check(
        "plain",
        "apply",
        &["apply", "-o", "-", "--label", "team=web", "guestbook", "."],
    );
    check(
        "plain",
        "test-default-group",
        &["test", "-g", "default", "."],
    );
}

#[test]
fn a_helm_chart_is_customized_per_environment() {
    check(
        "helm-chart",
        "test-dev",
        &["test", "-l", "env=dev", "-N", "dev-1", "."],
    );
    check(
        "helm-chart",
        "test-prod",
        &["test", "-l", "env=prod", "-N", "prod-1", "."],
    );
    check("helm-chart", "apply", &["apply", "-o", "-", "web", "."]);
}

#[test]
fn kustomize_directories_are_chosen_per_target() {
    check("kustomize", "test-dev", &["test", "-l", "env=dev", "."]);
    check("kustomize", "test-prod", &["test", "-l", "env=prod", "."]);
}

#[test]
fn yaml_overlays_replace_add_and_patch() {
    check("overlays", "test-prod", &["test", "-l", "env=prod", "."]);
    check("overlays", "test-dev", &["test", "-l", "env=dev", "."]);
    // Fleet's `fleet target -b` on the Bundle `fleet apply -o` wrote: the Content, then a
    // BundleDeployment per matched cluster (`internal/cmd/cli/target.go`).
    let repo = fixtures().join("overlays").join("repo");
    let bundles = tempfile::tempdir().expect("tempdir");
    let bundle_file = bundles.path().join("bundles.yaml");
    let bundle_path = bundle_file.display().to_string();
    let applied = fleet(&repo, &["apply", "-o", &bundle_path, "api", "."]);
    assert!(applied.status.success(), "{applied:?}");
    let target = [
        "target",
        "-b",
        &bundle_path,
        "--clusters",
        "../../clusters.yaml",
    ];
    check("overlays", "target", &target);
    // Fleet's `fleet deploy --dry-run` on that output: the resources of the release.
    let targeted = fleet(&repo, &target);
    let deploy_input = bundles.path().join("dev.yaml");
    let dev: String = String::from_utf8_lossy(&targeted.stdout)
        .split("---\n")
        .filter(|doc| doc.contains("kind: Content") || doc.contains("cluster-fleet-default-dev"))
        .map(|doc| format!("---\n{doc}"))
        .collect();
    std::fs::write(&deploy_input, dev).expect("write");
    let input = deploy_input.display().to_string();
    check(
        "overlays",
        "deploy-dev",
        &["deploy", "--dry-run", "-i", &input],
    );
}

#[test]
fn nested_fleet_yamls_make_bundles_and_fleetignore_excludes() {
    check("nested", "apply", &["apply", "-o", "-", "nested", "multi"]);
    // The parent renders its own manifests (`.json` too), not those of `sub`, which is a
    // bundle of its own: each object comes from exactly one release.
    check("nested", "test", &["test", "-g", "default", "multi"]);
}

#[test]
fn values_files_merge_at_each_level_and_leave_the_resources() {
    check(
        "values-files",
        "test-prod",
        &[
            "test", "-g", "default", "-l", "env=prod", "-N", "prod-1", ".",
        ],
    );
    check("values-files", "apply", &["apply", "-o", "-", "web", "."]);
}

/// `fleet` in a temporary repository with `files`; returns the output and the directory.
fn in_temp_repo(files: &[(&str, &str)], args: &[&str]) -> (Output, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    for (path, content) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, content).expect("write");
    }
    (fleet(dir.path(), args), dir)
}

fn assert_fails_naming(output: &Output, text: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "should fail: {stderr}");
    assert!(
        stderr.contains(text),
        "stderr should name {text:?}: {stderr}"
    );
}

/// `fleet test` as Fleet's (`internal/cmd/cli/match`): group `default` when no group, label,
/// group label or target is given; `-t` by target name; `# Matched:` on stderr; no match fails.
#[test]
fn test_matches_like_fleets_cli() {
    let files = [
        (
            "fleet.yaml",
            "namespace: base\ntargetCustomizations:\n- name: prod\n  clusterSelector: {matchLabels: {env: prod}}\n  namespace: prod-ns\n",
        ),
        (
            "cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n",
        ),
    ];
    let stdout = |out: &Output| String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = |out: &Output| String::from_utf8_lossy(&out.stderr).into_owned();

    // Only the customization targets clusters here, so a plain cluster of group `default` gets
    // nothing: Fleet's error, exit 1.
    let (out, _dir) = in_temp_repo(&files, &["test", "."]);
    assert_fails_naming(&out, "no match found");

    let (out, _dir) = in_temp_repo(&files, &["test", "-l", "env=prod", "."]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("# Matched: prod"), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("namespace: prod-ns"),
        "{}",
        stdout(&out)
    );

    let (out, _dir) = in_temp_repo(&files, &["test", "-t", "prod", "."]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("namespace: prod-ns"),
        "{}",
        stdout(&out)
    );

    // A bundle without targets goes to group `default`, which the cluster is in by default.
    let (out, _dir) = in_temp_repo(&files[1..], &["test", "."]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("# Matched: default"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bad_input_gets_one_clear_message_and_writes_nothing() {
    let (out, dir) = in_temp_repo(
        &[("app/cm.yaml", "kind: ConfigMap\n")],
        &["apply", "-o", "out.yaml", "r", "missing"],
    );
    assert_fails_naming(&out, "missing: no such directory");
    assert!(!dir.path().join("out.yaml").exists());

    let (out, dir) = in_temp_repo(
        &[
            (
                "app/fleet.yaml",
                "defaultNamespace: a\nhelm:\n  values: [\n",
            ),
            ("ok/cm.yaml", "kind: ConfigMap\n"),
        ],
        &["apply", "-o", "out.yaml", "r", "app", "ok"],
    );
    assert_fails_naming(&out, "app/fleet.yaml:");
    assert!(
        !dir.path().join("out.yaml").exists(),
        "nothing written when one bundle fails"
    );

    let (out, _dir) = in_temp_repo(
        &[("app/deploy.yaml", "kind: Deployment\nspec: [\n  a: b\n")],
        &["apply", "-o", "-", "r", "app"],
    );
    assert_fails_naming(&out, "app/deploy.yaml:");

    let (out, _dir) = in_temp_repo(
        &[
            (
                "Chart.yaml",
                "apiVersion: v2\nname: broken\nversion: 0.1.0\n",
            ),
            (
                "templates/cm.yaml",
                "kind: ConfigMap\ndata: {{ .Values.x | nosuchfunction }}\n",
            ),
        ],
        &["test", "-g", "default", "."],
    );
    assert_fails_naming(&out, "templates/cm.yaml");
}

/// The names of the Bundles in `fleet apply -o -` output.
fn bundle_names(output: &Output) -> Vec<String> {
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .filter_map(|line| line.strip_prefix("  name: "))
        .map(str::to_owned)
        .collect()
}

/// `fleet apply`'s path arguments and flags as Fleet's (`internal/cmd/cli/apply.go`,
/// `internal/cmd/cli/apply/apply.go`): paths are globs of directories (`globDirs`), `-b`
/// reads each bundle's options from another file and names the bundle after it,
/// `--driven-scan` takes `DIR:OPTIONS` (`CreateBundlesDriven`), `--commit` labels the Bundles,
/// `-f` applies a Bundle as it is.
#[test]
fn apply_paths_are_globs_and_flags_are_fleets() {
    let files = [
        (
            "apps/a/cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n",
        ),
        (
            "apps/b/cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n",
        ),
        ("apps/b/prod.yaml", "defaultNamespace: prod\n"),
        (
            "other/cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: o}\n",
        ),
    ];
    let (globbed, _dir) = in_temp_repo(&files, &["apply", "-o", "-", "r", "apps/*"]);
    assert_eq!(bundle_names(&globbed), ["r-apps-a", "r-apps-b"]);
    let (none, _dir) = in_temp_repo(&files, &["apply", "-o", "-", "r", "nothing/*"]);
    assert_fails_naming(&none, "nothing/*: no such directory");

    let (bundle_file, _dir) = in_temp_repo(
        &files,
        &["apply", "-o", "-", "-b", "prod.yaml", "r", "apps/b"],
    );
    assert_eq!(bundle_names(&bundle_file), ["r-apps-b-prod"]);
    assert!(String::from_utf8_lossy(&bundle_file.stdout).contains("defaultNamespace: prod"));

    let driven = [
        "apply",
        "-o",
        "-",
        "--driven-scan",
        "r",
        "apps/b:prod.yaml",
        "other",
    ];
    let (driven, _dir) = in_temp_repo(&files, &driven);
    assert_eq!(bundle_names(&driven), ["r-apps-b-prod", "r-other"]);

    let (commit, _dir) = in_temp_repo(
        &files,
        &["apply", "-o", "-", "--commit", "abc123", "r", "other"],
    );
    assert!(String::from_utf8_lossy(&commit.stdout).contains("fleet.cattle.io/commit: abc123"));

    let raw = (
        "bundle.yaml",
        "apiVersion: fleet.cattle.io/v1alpha1\nkind: Bundle\nmetadata: {name: ignored}\nspec: {defaultNamespace: raw}\n",
    );
    let (file, _dir) = in_temp_repo(
        &[raw],
        &[
            "apply",
            "-o",
            "-",
            "-n",
            "team",
            "-f",
            "bundle.yaml",
            "given",
        ],
    );
    let stdout = String::from_utf8_lossy(&file.stdout);
    assert_eq!(bundle_names(&file), ["given"]);
    assert!(
        stdout.contains("namespace: team") && stdout.contains("defaultNamespace: raw"),
        "{stdout}"
    );
}

/// Mistakes in `fleet.yaml` are refused when the Bundle is built, naming what is wrong: a
/// type error its field path (and line), a local `helm.chart` that is not there its path
/// (Fleet's reader fails to resolve it in `addRemoteCharts`).
#[test]
fn fleet_yaml_mistakes_name_the_field() {
    let (typed, _dir) = in_temp_repo(
        &[("app/fleet.yaml", "helm:\n  timeoutSeconds: not-a-number\n")],
        &["apply", "-o", "-", "r", "app"],
    );
    assert_fails_naming(
        &typed,
        "app/fleet.yaml:2: helm.timeoutSeconds: expected an integer, got \"not-a-number\"",
    );
    let (chart, _dir) = in_temp_repo(
        &[("app/fleet.yaml", "helm:\n  chart: ./charts/web\n")],
        &["apply", "-o", "-", "r", "app"],
    );
    assert_fails_naming(
        &chart,
        "helm.chart: chart \"./charts/web\" not found at app/charts/web",
    );
}
