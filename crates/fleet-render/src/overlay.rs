//! Fleet's raw-YAML customization: the directories `overlays/<name>/` selected by a target's
//! `yaml.overlays`, applied in order. A file there replaces (or adds) the base file with the
//! same path; a file named `foo_patch.yaml` patches `foo.yaml` instead: a YAML list is a JSON
//! Patch (RFC 6902), anything else a JSON Merge Patch (RFC 7386). Fleet also tries a strategic
//! merge patch for built-in kinds, which needs the API schema; fleet-rs does not (lists in a
//! merge patch replace, they do not merge by key).

use serde_json::Value;

use crate::Files;

/// The directory below a bundle that holds overlays.
pub const OVERLAYS_DIR: &str = "overlays/";

/// An overlay that cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OverlayError {
    #[error("overlay {0:?} does not exist (no overlays/{0}/ directory)")]
    Missing(String),
    #[error("{patch}: patches {target}, which does not exist")]
    NoTarget { patch: String, target: String },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

/// The base files (everything outside `overlays/`) with `overlays` applied in order.
pub fn apply_overlays(files: &Files, overlays: &[String]) -> Result<Files, OverlayError> {
    let mut result: Files = files
        .iter()
        .filter(|(path, _)| !path.starts_with(OVERLAYS_DIR))
        .map(|(p, c)| (p.clone(), c.clone()))
        .collect();
    for name in overlays {
        let prefix = format!("{OVERLAYS_DIR}{name}/");
        let mut found = false;
        for (path, content) in files.iter().filter(|(p, _)| p.starts_with(&prefix)) {
            found = true;
            let relative = &path[prefix.len()..];
            match patch_target(relative) {
                Some(target) => {
                    let base = result.get(&target).ok_or_else(|| OverlayError::NoTarget {
                        patch: path.clone(),
                        target: target.clone(),
                    })?;
                    let patched =
                        patch(base, content).map_err(|message| OverlayError::Invalid {
                            path: path.clone(),
                            message,
                        })?;
                    result.insert(target, patched);
                }
                None => {
                    result.insert(relative.to_owned(), content.clone());
                }
            }
        }
        if !found {
            return Err(OverlayError::Missing(name.clone()));
        }
    }
    Ok(result)
}

/// `dir/foo_patch.yaml` → `dir/foo.yaml`; `None` for a file that is not a patch.
fn patch_target(path: &str) -> Option<String> {
    let (dir, file) = path.rsplit_once('/').map_or(("", path), |(d, f)| (d, f));
    let index = file.find("_patch.")?;
    let target = format!("{}.{}", &file[..index], &file[index + "_patch.".len()..]);
    Some(if dir.is_empty() {
        target
    } else {
        format!("{dir}/{target}")
    })
}

/// The base document with the patch applied, as YAML.
fn patch(base: &[u8], patch: &[u8]) -> Result<Vec<u8>, String> {
    let text = |bytes: &[u8]| {
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|e| e.to_string())
    };
    let mut document: Value =
        serde_saphyr::from_str(&text(base)?).map_err(|e| format!("base: {e}"))?;
    let patch: Value = serde_saphyr::from_str(&text(patch)?).map_err(|e| e.to_string())?;
    match patch {
        Value::Array(_) => {
            let operations: json_patch::Patch =
                serde_json::from_value(patch).map_err(|e| format!("not a JSON Patch: {e}"))?;
            json_patch::patch(&mut document, &operations).map_err(|e| e.to_string())?;
        }
        merge => json_patch::merge(&mut document, &merge),
    }
    serde_saphyr::to_string(&document)
        .map(String::into_bytes)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(entries: &[(&str, &str)]) -> Files {
        entries
            .iter()
            .map(|(p, c)| ((*p).to_owned(), c.as_bytes().to_vec()))
            .collect()
    }

    fn yaml(files: &Files, path: &str) -> Value {
        serde_saphyr::from_str(std::str::from_utf8(&files[path]).expect("utf8")).expect("yaml")
    }

    #[test]
    fn overlays_replace_add_and_patch_in_order() {
        let base = files(&[
            (
                "deployment.yaml",
                "kind: Deployment\nspec:\n  replicas: 1\n  paused: false\n",
            ),
            ("svc.yaml", "kind: Service\nspec:\n  type: ClusterIP\n"),
            (
                "overlays/prod/svc.yaml",
                "kind: Service\nspec:\n  type: LoadBalancer\n",
            ),
            ("overlays/prod/configmap.yaml", "kind: ConfigMap\n"),
            (
                "overlays/prod/deployment_patch.yaml",
                "spec:\n  replicas: 3\n  paused: null\n",
            ),
            (
                "overlays/big/deployment_patch.yaml",
                "- op: replace\n  path: /spec/replicas\n  value: 10\n",
            ),
        ]);
        let result =
            apply_overlays(&base, &["prod".to_owned(), "big".to_owned()]).expect("applied");
        assert_eq!(
            result.keys().collect::<Vec<_>>(),
            ["configmap.yaml", "deployment.yaml", "svc.yaml"]
        );
        assert_eq!(yaml(&result, "svc.yaml")["spec"]["type"], "LoadBalancer");
        assert_eq!(
            yaml(&result, "deployment.yaml"),
            serde_json::json!({"kind": "Deployment", "spec": {"replicas": 10}})
        );
        let without = apply_overlays(&base, &[]).expect("no overlays");
        assert_eq!(without.len(), 2);
    }

    #[test]
    fn missing_overlays_and_targets_are_errors() {
        let base = files(&[("a.yaml", "x: 1\n"), ("overlays/o/b_patch.yaml", "x: 2\n")]);
        assert_eq!(
            apply_overlays(&base, &["nope".to_owned()]),
            Err(OverlayError::Missing("nope".to_owned()))
        );
        assert!(matches!(
            apply_overlays(&base, &["o".to_owned()]),
            Err(OverlayError::NoTarget { .. })
        ));
        assert_eq!(
            patch_target("sub/deploy_patch.yaml").as_deref(),
            Some("sub/deploy.yaml")
        );
        assert_eq!(patch_target("deploy.yaml"), None);
    }
}
