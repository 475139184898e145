//! A Helm repository's `index.yaml` and choosing a chart version from it, as Helm does: an
//! exact version, a semver constraint (`^1.2`, `>=1.0 <2`), or nothing / `*` for the newest
//! stable release.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The parts of `index.yaml` that matter here.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Index {
    #[serde(default)]
    pub entries: BTreeMap<String, Vec<Entry>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Entry {
    pub version: String,
    #[serde(default)]
    pub urls: Vec<String>,
}

/// Why no version could be chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("chart {0:?} is not in the repository")]
    NoChart(String),
    #[error("invalid version constraint {constraint:?}: {message}")]
    Constraint { constraint: String, message: String },
    #[error("no version of chart {chart:?} matches {constraint:?}")]
    NoMatch { chart: String, constraint: String },
}

impl Index {
    pub fn parse(text: &str) -> Result<Self, String> {
        serde_saphyr::from_str(text).map_err(|e| format!("index.yaml: {e}"))
    }

    /// The version of `chart` that `constraint` selects.
    pub fn resolve(&self, chart: &str, constraint: Option<&str>) -> Result<String, ResolveError> {
        let entries = self
            .entries
            .get(chart)
            .ok_or_else(|| ResolveError::NoChart(chart.to_owned()))?;
        let constraint = constraint
            .map(str::trim)
            .filter(|c| !c.is_empty() && *c != "*");
        let versions = entries.iter().filter_map(|e| {
            semver::Version::parse(e.version.trim_start_matches('v'))
                .ok()
                .map(|v| (v, e.version.clone()))
        });
        let chosen = match constraint {
            None => versions
                .filter(|(v, _)| v.pre.is_empty())
                .max_by(|a, b| a.0.cmp(&b.0)),
            Some(exact) if entries.iter().any(|e| e.version == exact) => {
                return Ok(exact.to_owned());
            }
            Some(constraint) => {
                let requirement = semver::VersionReq::parse(constraint).map_err(|e| {
                    ResolveError::Constraint {
                        constraint: constraint.to_owned(),
                        message: e.to_string(),
                    }
                })?;
                versions
                    .filter(|(v, _)| requirement.matches(v))
                    .max_by(|a, b| a.0.cmp(&b.0))
            }
        };
        chosen
            .map(|(_, text)| text)
            .ok_or_else(|| ResolveError::NoMatch {
                chart: chart.to_owned(),
                constraint: constraint.unwrap_or("*").to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> Index {
        Index::parse(
            "apiVersion: v1\nentries:\n  web:\n  - version: 1.2.0\n  - version: 1.10.1\n  - version: 2.0.0-rc.1\n  - version: 0.9.0\n",
        )
        .expect("index")
    }

    #[test]
    fn versions_are_chosen_as_helm_does() {
        let index = index();
        assert_eq!(index.resolve("web", None), Ok("1.10.1".to_owned()));
        assert_eq!(index.resolve("web", Some("*")), Ok("1.10.1".to_owned()));
        assert_eq!(index.resolve("web", Some("1.2.0")), Ok("1.2.0".to_owned()));
        assert_eq!(index.resolve("web", Some("~1.2")), Ok("1.2.0".to_owned()));
        assert_eq!(
            index.resolve("web", Some(">=1.0, <2.0")),
            Ok("1.10.1".to_owned())
        );
        assert!(matches!(
            index.resolve("web", Some("^3")),
            Err(ResolveError::NoMatch { .. })
        ));
        assert!(matches!(
            index.resolve("api", None),
            Err(ResolveError::NoChart(_))
        ));
        assert!(matches!(
            index.resolve("web", Some("not a version")),
            Err(ResolveError::Constraint { .. })
        ));
    }
}
