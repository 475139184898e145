//! A BundleDeployment planned and not yet written, held as the JSON it is sent as.
//!
//! A Bundle's writes go out `write_concurrency` at a time, so most of its planned
//! BundleDeployments wait seconds for theirs: held as structs (labels, the options twice,
//! the ids and the content hash each in allocations of their own) they were the largest
//! part of a fan-out's plans. Their JSON is a fraction of that; each is decoded again right
//! before its write.

use fleet_api::BundleDeployment;

use super::plan::{Key, key_of};

/// A planned BundleDeployment: its key, its content hash, and its JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub key: Key,
    pub hash: String,
    json: Box<[u8]>,
}

impl Planned {
    /// `deployment`, stamped with `hash`, as planned.
    pub fn new(deployment: &BundleDeployment, hash: String) -> Result<Self, serde_json::Error> {
        Ok(Self {
            key: key_of(&deployment.metadata),
            hash,
            json: serde_json::to_vec(deployment)?.into_boxed_slice(),
        })
    }

    /// The BundleDeployment to write.
    pub fn deployment(&self) -> Result<BundleDeployment, serde_json::Error> {
        serde_json::from_slice(&self.json)
    }
}

#[cfg(test)]
mod tests {
    use fleet_api::{BundleDeploymentOptions, BundleDeploymentSpec, HelmOptions};
    use fleet_runtime::inventory::{hash_of, stamp};

    use super::*;

    #[test]
    fn a_planned_deployment_is_written_as_it_was_planned() {
        let mut bd = BundleDeployment::new(
            "app",
            BundleDeploymentSpec {
                deployment_id: Some("s-1:o".to_owned()),
                options: BundleDeploymentOptions {
                    helm: Some(HelmOptions {
                        values: serde_json::json!({"replicas": 2, "name": "web"})
                            .as_object()
                            .cloned(),
                        ..HelmOptions::default()
                    }),
                    ..BundleDeploymentOptions::default()
                },
                ..BundleDeploymentSpec::default()
            },
        );
        bd.metadata.namespace = Some("cluster-a".to_owned());
        stamp(&mut bd.metadata, "abc");
        let planned = Planned::new(&bd, "abc".to_owned()).expect("encodes");
        assert_eq!(planned.key, ("cluster-a".to_owned(), "app".to_owned()));
        let written = planned.deployment().expect("decodes");
        assert_eq!(
            serde_json::to_value(&written).expect("encodes"),
            serde_json::to_value(&bd).expect("encodes")
        );
        assert_eq!(hash_of(&written.metadata).as_deref(), Some("abc"));
    }
}
