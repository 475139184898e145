//! A BundleDeployment planned and not yet written, held as the JSON it is sent as.
//!
//! A Bundle reconcile plans a BundleDeployment per target before it writes any, and its
//! writes go out `write_concurrency` at a time, so most of them wait seconds for theirs.
//! Held as structs (labels, the options twice with their Helm values as parsed maps, the ids
//! and the content hash each in allocations of their own) they were the largest part of a
//! controller's memory during a fan-out. So each is stamped with its content hash and turned
//! into its JSON as soon as it is built ([`Planned::of`]), and decoded again right before its
//! write. Its options and staged options are kept apart, as [`KeptOptions`]: the targets
//! that deploy the same options share one copy of them.

use fleet_api::BundleDeployment;
use fleet_render::deployments::sha256_hex;
use fleet_runtime::inventory::stamp;

use super::plan::{Key, key_of};
use crate::kept_options::KeptOptions;

/// A planned BundleDeployment: its key, its content hash, and its JSON.
#[derive(Debug, Clone)]
pub struct Planned {
    pub key: Key,
    pub hash: String,
    body: Body,
}

#[derive(Debug, Clone)]
enum Body {
    Json {
        /// The BundleDeployment without its options and staged options.
        rest: Box<[u8]>,
        options: KeptOptions,
        staged: KeptOptions,
    },
    /// One that could not be encoded, kept as it is.
    Struct(Box<BundleDeployment>),
}

impl Planned {
    /// `deployment`, stamped with its content hash, as planned.
    pub fn of(mut deployment: BundleDeployment) -> Self {
        let hash = content_hash(&deployment);
        stamp(&mut deployment.metadata, &hash);
        let key = key_of(&deployment.metadata);
        let options = std::mem::take(&mut deployment.spec.options);
        let staged = std::mem::take(&mut deployment.spec.staged_options);
        let body = match serde_json::to_vec(&deployment) {
            Ok(rest) => Body::Json {
                rest: rest.into_boxed_slice(),
                options: KeptOptions::of(options),
                staged: KeptOptions::of(staged),
            },
            Err(_) => {
                deployment.spec.options = options;
                deployment.spec.staged_options = staged;
                Body::Struct(Box::new(deployment))
            }
        };
        Self { key, hash, body }
    }

    /// The BundleDeployment to write.
    pub fn deployment(&self) -> Result<BundleDeployment, serde_json::Error> {
        match &self.body {
            Body::Json {
                rest,
                options,
                staged,
            } => {
                let mut deployment: BundleDeployment = serde_json::from_slice(rest)?;
                deployment.spec.options = options.options()?;
                deployment.spec.staged_options = staged.options()?;
                Ok(deployment)
            }
            Body::Struct(deployment) => Ok(deployment.as_ref().clone()),
        }
    }

    /// This one changed by `change` (a target the rollout holds back), stamped again.
    pub fn changed(
        self,
        change: impl FnOnce(&mut BundleDeployment) -> Result<(), serde_json::Error>,
    ) -> Result<Self, serde_json::Error> {
        let mut deployment = self.deployment()?;
        change(&mut deployment)?;
        Ok(Self::of(deployment))
    }
}

/// The hash of what the controller writes of a BundleDeployment.
pub fn content_hash(bd: &BundleDeployment) -> String {
    let json = serde_json::json!({"labels": bd.metadata.labels, "spec": bd.spec});
    sha256_hex(json.to_string().as_bytes())
}

#[cfg(test)]
mod tests {
    use fleet_api::{BundleDeploymentOptions, BundleDeploymentSpec, HelmOptions};
    use fleet_runtime::inventory::hash_of;

    use super::*;

    fn deployment() -> BundleDeployment {
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
        bd.spec.staged_options = bd.spec.options.clone();
        bd.metadata.namespace = Some("cluster-a".to_owned());
        bd
    }

    fn json(bd: &BundleDeployment) -> serde_json::Value {
        serde_json::to_value(bd).expect("encodes")
    }

    #[test]
    fn a_planned_deployment_is_written_as_it_was_planned_with_its_hash() {
        let bd = deployment();
        let planned = Planned::of(bd.clone());
        assert_eq!(planned.key, ("cluster-a".to_owned(), "app".to_owned()));
        assert_eq!(planned.hash, content_hash(&bd));
        let written = planned.deployment().expect("decodes");
        assert_eq!(hash_of(&written.metadata), Some(planned.hash.clone()));
        let mut stamped = bd;
        stamp(&mut stamped.metadata, &planned.hash);
        assert_eq!(json(&written), json(&stamped));
    }

    #[test]
    fn a_changed_deployment_is_stamped_with_its_new_hash() {
        let planned = Planned::of(deployment());
        let before = planned.hash.clone();
        let changed = planned
            .changed(|bd| {
                bd.spec.deployment_id = None;
                Ok(())
            })
            .expect("changed");
        let written = changed.deployment().expect("decodes");
        assert_eq!(written.spec.deployment_id, None);
        assert_ne!(changed.hash, before);
        assert_eq!(changed.hash, content_hash(&written));
        assert_eq!(hash_of(&written.metadata), Some(changed.hash.clone()));
    }
}
