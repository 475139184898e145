//! Deployment options as the controller keeps them: as their JSON, one copy of each distinct
//! content in the process.
//!
//! Every BundleDeployment carries its options, Helm values included, in the cache (a
//! `Deployed`) and while planned (a Bundle reconcile's `Planned`). A parsed map
//! of values takes several times its JSON, and they are read only when a target is held
//! back, a Bundle is paused or a BundleDeployment is written. And most of a Bundle's targets
//! deploy the same options (its values, or those of one target customization): kept once
//! per BundleDeployment, 1,000 targets of 4 KiB of values held 4 MB where one copy does.
//! So equal options share one string ([`KeptOptions`], through [`crate::shared`]).

use std::sync::Arc;

use fleet_api::BundleDeploymentOptions;
use serde::Deserialize;

use crate::shared::shared;

/// The options of a BundleDeployment, kept. The default options take nothing.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KeptOptions(Kept);

#[derive(Clone, Debug, Default, PartialEq)]
enum Kept {
    #[default]
    Default,
    /// Shared by every BundleDeployment with these options.
    Json(Arc<str>),
    /// Options that could not be encoded, kept as they are.
    Parsed(Box<BundleDeploymentOptions>),
}

impl KeptOptions {
    /// Keeps `options`.
    pub fn of(options: BundleDeploymentOptions) -> Self {
        if options == BundleDeploymentOptions::default() {
            return Self(Kept::Default);
        }
        match serde_json::to_string(&options) {
            Ok(json) => Self(Kept::Json(shared(&json))),
            Err(_) => Self(Kept::Parsed(Box::new(options))),
        }
    }

    /// The options kept.
    pub fn options(&self) -> Result<BundleDeploymentOptions, serde_json::Error> {
        match &self.0 {
            Kept::Default => Ok(BundleDeploymentOptions::default()),
            Kept::Json(json) => serde_json::from_str(json),
            Kept::Parsed(options) => Ok(options.as_ref().clone()),
        }
    }
}

impl<'de> Deserialize<'de> for KeptOptions {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        BundleDeploymentOptions::deserialize(deserializer).map(Self::of)
    }
}

#[cfg(test)]
mod tests {
    use fleet_api::HelmOptions;

    use super::*;

    fn with_values(values: serde_json::Value) -> BundleDeploymentOptions {
        BundleDeploymentOptions {
            helm: Some(HelmOptions {
                values: values.as_object().cloned(),
                ..HelmOptions::default()
            }),
            ..BundleDeploymentOptions::default()
        }
    }

    fn json(kept: &KeptOptions) -> &Arc<str> {
        match &kept.0 {
            Kept::Json(json) => json,
            other => panic!("not kept as JSON: {other:?}"),
        }
    }

    #[test]
    fn options_are_kept_as_their_json_and_default_ones_not_at_all() {
        let options = with_values(serde_json::json!({"replicas": 2, "image": {"tag": "v1"}}));
        let kept = KeptOptions::of(options.clone());
        json(&kept);
        assert_eq!(kept.options().expect("decodes"), options);
        let default = KeptOptions::of(BundleDeploymentOptions::default());
        assert_eq!(default.0, Kept::Default);
        assert_eq!(default.options().expect("decodes"), Default::default());
    }

    #[test]
    fn equal_options_share_one_string() {
        let values = serde_json::json!({"shared-by": "equal options", "n": 1});
        let (a, b) = (
            KeptOptions::of(with_values(values.clone())),
            KeptOptions::of(with_values(values)),
        );
        assert!(Arc::ptr_eq(json(&a), json(&b)));
        let other = KeptOptions::of(with_values(serde_json::json!({"n": 2})));
        assert!(!Arc::ptr_eq(json(&a), json(&other)));
    }
}
