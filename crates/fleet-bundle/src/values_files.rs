//! `helm.valuesFiles` as Fleet's bundle reader handles them (`parseValuesFiles` and
//! `ignoreApplyConfigs` in `internal/bundlereader/resources.go`):
//! - when the Bundle is built, each file's values are merged over the `values` of the same
//!   `helm` block, in order (the files win), for the top-level options and for each target
//!   customization; `valuesFiles` stays listed in the spec;
//! - the files are then left out of the Bundle's resources (matched by the path as written and
//!   by base name), as are `fleet.yaml` and a driven-scan options file.
//!
//! So the values a cluster gets are: top-level `values`, top-level files, then the target's
//! `values` and the target's files (the target's `helm` is merged over the top-level one when
//! the BundleDeployment is made), and the agent never reads a values file.

use std::path::{Path, PathBuf};

use fleet_api::values::merge_json;
use fleet_api::{BundleSpec, HelmOptions};
use serde_json::Value;

use crate::files::{Files, SizeLimits};

/// A values file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("reading values file {}: {message}", path.display())]
pub struct ValuesFileError {
    pub path: PathBuf,
    pub message: String,
}

/// Merges the values files of the top-level `helm` and of every target's `helm` into their
/// `values`, reading them relative to `dir` and only from below `boundary` (the repository):
/// a path that leads out of it (`../..`, an absolute path, a link) is refused, so a
/// repository cannot have the reader's own files copied into a Bundle.
pub fn fold(
    spec: &mut BundleSpec,
    dir: &Path,
    boundary: &Path,
    limits: &SizeLimits,
) -> Result<(), ValuesFileError> {
    let within = Within {
        dir,
        boundary,
        limits,
    };
    if let Some(helm) = spec.options.helm.as_mut() {
        within.fold(helm)?;
    }
    for target in &mut spec.targets {
        if let Some(helm) = target.options.helm.as_mut() {
            within.fold(helm)?;
        }
    }
    Ok(())
}

/// Where values files are read from.
struct Within<'a> {
    dir: &'a Path,
    boundary: &'a Path,
    limits: &'a SizeLimits,
}

impl Within<'_> {
    fn fold(&self, helm: &mut HelmOptions) -> Result<(), ValuesFileError> {
        if helm.values_files.is_empty() {
            return Ok(());
        }
        let mut merged = Value::Object(helm.values.clone().unwrap_or_default());
        for file in &helm.values_files {
            merge_json(&mut merged, read(&self.path(file)?, self.limits)?);
        }
        if let Value::Object(values) = merged
            && !values.is_empty()
        {
            helm.values = Some(values);
        }
        Ok(())
    }

    /// `file` relative to `dir`, if it resolves to a place below the boundary.
    fn path(&self, file: &str) -> Result<PathBuf, ValuesFileError> {
        let error = |message: String| ValuesFileError {
            path: self.dir.join(file),
            message,
        };
        let resolved = self
            .dir
            .join(file)
            .canonicalize()
            .map_err(|e| error(e.to_string()))?;
        let boundary = self
            .boundary
            .canonicalize()
            .map_err(|e| error(e.to_string()))?;
        if resolved.starts_with(&boundary) {
            Ok(resolved)
        } else {
            Err(error("the path leads outside the repository".to_owned()))
        }
    }
}

fn read(path: &Path, limits: &SizeLimits) -> Result<Value, ValuesFileError> {
    let error = |message: String| ValuesFileError {
        path: path.to_owned(),
        message,
    };
    limits.check_file(path).map_err(|e| error(e.to_string()))?;
    let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
    let values: Value = serde_saphyr::from_str(&text).map_err(|e| error(e.to_string()))?;
    match values {
        Value::Object(_) => Ok(values),
        Value::Null => Ok(Value::Object(serde_json::Map::new())),
        other => Err(error(format!(
            "expected a map of values, got {}",
            kind(&other)
        ))),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Array(_) => "a list",
        Value::String(_) => "a string",
        Value::Number(_) => "a number",
        Value::Bool(_) => "a boolean",
        Value::Null | Value::Object(_) => "a map",
    }
}

/// The files that only configure `fleet apply` and are left out of the resources: `fleet.yaml`,
/// the driven-scan options file (`options_file`, relative to the bundle directory), and every
/// values file of `spec`, by the path as written and by base name.
pub fn apply_configs(spec: &BundleSpec, options_file: Option<&str>) -> Vec<String> {
    let mut ignore = vec!["fleet.yaml".to_owned()];
    ignore.extend(options_file.map(str::to_owned));
    let helms = std::iter::once(spec.options.helm.as_ref())
        .chain(spec.targets.iter().map(|t| t.options.helm.as_ref()))
        .flatten();
    for helm in helms {
        for file in &helm.values_files {
            ignore.push(file.clone());
            ignore.push(file.rsplit('/').next().unwrap_or(file).to_owned());
        }
    }
    ignore
}

/// `files` without those `apply_configs` names.
pub fn without(mut files: Files, ignore: &[String]) -> Files {
    files.retain(|path, _| !ignore.iter().any(|name| name == path));
    files
}

#[cfg(test)]
mod tests {
    use fleet_api::BundleTarget;
    use serde_json::json;

    use super::*;
    use crate::testutil::TempTree;

    fn helm(values: Value, files: &[&str]) -> Option<HelmOptions> {
        Some(HelmOptions {
            values: values.as_object().cloned(),
            values_files: files.iter().map(|f| (*f).to_owned()).collect(),
            ..HelmOptions::default()
        })
    }

    #[test]
    fn files_win_over_values_at_each_level_and_targets_keep_their_own() {
        let dir = TempTree::new(&[
            ("chart/values-a.yaml", "a: file\nshared: {x: top-file}\n"),
            ("b.yaml", "b: file\n"),
            ("target.yaml", "shared: {y: target-file}\nt: file\n"),
        ]);
        let mut spec = BundleSpec::default();
        spec.options.helm = helm(
            json!({"a": "inline", "keep": 1}),
            &["chart/values-a.yaml", "./b.yaml"],
        );
        let mut target = BundleTarget::default();
        target.options.helm = helm(json!({"t": "inline", "u": 2}), &["target.yaml"]);
        spec.targets.push(target);
        fold(&mut spec, dir.root(), dir.root(), &SizeLimits::default()).expect("fold");
        assert_eq!(
            Value::Object(
                spec.options
                    .helm
                    .as_ref()
                    .and_then(|h| h.values.clone())
                    .unwrap_or_default()
            ),
            json!({"a": "file", "b": "file", "keep": 1, "shared": {"x": "top-file"}})
        );
        assert_eq!(
            Value::Object(
                spec.targets[0]
                    .options
                    .helm
                    .as_ref()
                    .and_then(|h| h.values.clone())
                    .unwrap_or_default()
            ),
            json!({"t": "file", "u": 2, "shared": {"y": "target-file"}})
        );
        let ignore = apply_configs(&spec, None);
        for name in [
            "fleet.yaml",
            "chart/values-a.yaml",
            "values-a.yaml",
            "./b.yaml",
            "b.yaml",
            "target.yaml",
        ] {
            assert!(ignore.contains(&name.to_owned()), "{name} in {ignore:?}");
        }
    }

    #[test]
    fn a_missing_or_malformed_values_file_names_the_file() {
        let dir = TempTree::new(&[("list.yaml", "- a\n- b\n")]);
        for (file, expect) in [
            ("missing.yaml", "missing.yaml"),
            ("list.yaml", "expected a map of values, got a list"),
        ] {
            let mut spec = BundleSpec::default();
            spec.options.helm = helm(json!({}), &[file]);
            let error =
                fold(&mut spec, dir.root(), dir.root(), &SizeLimits::default()).expect_err(file);
            assert!(error.to_string().contains(expect), "{error}");
        }
    }

    #[test]
    fn values_files_outside_the_repository_are_refused() {
        let outside = TempTree::new(&[("secret.yaml", "token: hunter2\n")]);
        let repo = TempTree::new(&[("app/values.yaml", "a: 1\n"), ("shared.yaml", "b: 2\n")]);
        let secret = outside.path("secret.yaml").display().to_string();
        let app = repo.path("app");
        for file in ["../shared.yaml", "values.yaml"] {
            let mut spec = BundleSpec::default();
            spec.options.helm = helm(json!({}), &[file]);
            fold(&mut spec, &app, repo.root(), &SizeLimits::default()).expect(file);
        }
        for file in [secret.as_str(), "../../../../../../../../etc/hostname"] {
            let mut spec = BundleSpec::default();
            spec.options.helm = helm(json!({}), &[file]);
            let error = fold(&mut spec, &app, repo.root(), &SizeLimits::default()).expect_err(file);
            let message = error.to_string();
            assert!(
                message.contains("outside the repository") || message.contains("No such file"),
                "{message}"
            );
            let values = spec.options.helm.and_then(|h| h.values).unwrap_or_default();
            assert!(values.is_empty(), "nothing read: {values:?}");
        }
    }

    #[test]
    fn only_the_named_paths_are_left_out() {
        let files: Files = [
            ("fleet.yaml", ""),
            ("values.yaml", ""),
            ("chart/values.yaml", ""),
            ("cm.yaml", ""),
        ]
        .iter()
        .map(|(p, c)| ((*p).to_owned(), c.as_bytes().to_vec()))
        .collect();
        let kept = without(files, &["fleet.yaml".to_owned(), "values.yaml".to_owned()]);
        assert_eq!(
            kept.keys().collect::<Vec<_>>(),
            ["chart/values.yaml", "cm.yaml"]
        );
    }
}
