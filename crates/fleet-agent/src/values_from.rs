//! `helm.valuesFrom`: Helm values read from ConfigMaps and Secrets in the downstream cluster,
//! as Fleet's agent reads them (key `values.yaml` unless one is given, the release namespace
//! unless one is given), merged in order; they take precedence over `values` and
//! `valuesFiles` (Fleet: valuesFrom > valuesFiles > values).

use fleet_api::values::merge_json;
use fleet_api::{BundleDeploymentOptions, KeyRef, Values};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{Api, Client};
use serde_json::Value;

/// The key read when a reference names none.
pub const DEFAULT_KEY: &str = "values.yaml";

/// The merged values of every `valuesFrom` entry of `options`; an error names the object and
/// says what is wrong with it.
pub async fn resolve(
    client: &Client,
    options: &BundleDeploymentOptions,
    release_namespace: &str,
) -> Result<Values, String> {
    let mut merged = Value::Object(Values::new());
    let Some(helm) = &options.helm else {
        return Ok(Values::new());
    };
    for source in &helm.values_from {
        let (what, text) = match (&source.config_map_key_ref, &source.secret_key_ref) {
            (Some(reference), _) => {
                let (namespace, key) = place(reference, release_namespace);
                let what = format!("ConfigMap {namespace}/{} key {key}", reference.name);
                let map = Api::<ConfigMap>::namespaced(client.clone(), namespace)
                    .get(&reference.name)
                    .await
                    .map_err(|e| format!("valuesFrom {what}: {e}"))?;
                let text = map.data.and_then(|mut d| d.remove(key));
                (what, text)
            }
            (None, Some(reference)) => {
                let (namespace, key) = place(reference, release_namespace);
                let what = format!("Secret {namespace}/{} key {key}", reference.name);
                let secret = Api::<Secret>::namespaced(client.clone(), namespace)
                    .get(&reference.name)
                    .await
                    .map_err(|e| format!("valuesFrom {what}: {e}"))?;
                let text = secret
                    .data
                    .and_then(|mut d| d.remove(key))
                    .map(|bytes| String::from_utf8_lossy(&bytes.0).into_owned());
                (what, text)
            }
            (None, None) => continue,
        };
        let text = text.ok_or_else(|| format!("valuesFrom {what}: no such key"))?;
        let values: Value = serde_saphyr::from_str(&text)
            .map_err(|e| format!("valuesFrom {what}: not YAML: {e}"))?;
        match values {
            Value::Null => {}
            Value::Object(_) => merge_json(&mut merged, values),
            _ => return Err(format!("valuesFrom {what}: not a map of values")),
        }
    }
    Ok(match merged {
        Value::Object(map) => map,
        _ => Values::new(),
    })
}

fn place<'a>(reference: &'a KeyRef, release_namespace: &'a str) -> (&'a str, &'a str) {
    (
        reference
            .namespace
            .as_deref()
            .filter(|n| !n.is_empty())
            .unwrap_or(release_namespace),
        reference
            .key
            .as_deref()
            .filter(|k| !k.is_empty())
            .unwrap_or(DEFAULT_KEY),
    )
}
