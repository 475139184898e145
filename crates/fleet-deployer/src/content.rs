//! A Content object's manifest (gzip of `{"resources": [...]}`, as the controller writes it)
//! back to the bundle's files.

use std::io::Read as _;

use base64::Engine as _;
use fleet_api::{BundleResource, Content};
use fleet_bundle::files::Files;
use fleet_bundle::read::decode_resources;

/// A Content that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("content {name}: {message}")]
pub struct ContentError {
    pub name: String,
    pub message: String,
}

/// The files of a Content's manifest.
pub fn files(content: &Content) -> Result<Files, ContentError> {
    let name = content.metadata.name.clone().unwrap_or_default();
    let error = |message: String| ContentError {
        name: name.clone(),
        message,
    };
    let compressed = base64::engine::general_purpose::STANDARD
        .decode(content.content.as_deref().unwrap_or_default())
        .map_err(|e| error(format!("not base64: {e}")))?;
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(compressed.as_slice())
        .read_to_end(&mut json)
        .map_err(|e| error(format!("not gzip: {e}")))?;
    #[derive(serde::Deserialize)]
    struct Manifest {
        #[serde(default)]
        resources: Vec<BundleResource>,
    }
    let manifest: Manifest =
        serde_json::from_slice(&json).map_err(|e| error(format!("not a manifest: {e}")))?;
    decode_resources(&manifest.resources).map_err(|e| error(e.to_string()))
}

#[cfg(test)]
mod tests {
    use fleet_api::{Bundle, BundleSpec};

    use super::*;

    #[test]
    fn the_controllers_content_reads_back_to_the_bundle_files() {
        let bundle = Bundle::new(
            "b",
            BundleSpec {
                resources: vec![BundleResource {
                    name: Some("cm.yaml".to_owned()),
                    content: Some("kind: ConfigMap\n".to_owned()),
                    encoding: None,
                }],
                ..BundleSpec::default()
            },
        );
        let content = fleet_render::deployments::content(&bundle);
        let files = files(&content).expect("files");
        assert_eq!(
            files.get("cm.yaml").map(Vec::as_slice),
            Some(&b"kind: ConfigMap\n"[..])
        );
    }
}
