//! Schema helpers: what `schemars` cannot say from the Rust types alone, and CRDs for the
//! kinds whose fields sit at the top level (Fleet's Content, BundleNamespaceMapping,
//! GitRepoRestriction), which `kube::CustomResource` cannot derive.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps,
};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};

/// Go's `time.Duration` text (`15s`, `1m30s`, `500ms`, `0`): what Fleet's `metav1.Duration`
/// fields accept.
pub const GO_DURATION_PATTERN: &str = r"^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$";

/// An object with arbitrary content (Helm values, patches): kept as-is by the API server.
pub(crate) fn preserve_unknown_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "nullable": true,
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// An optional Go duration string.
pub(crate) fn go_duration(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "nullable": true,
        "pattern": GO_DURATION_PATTERN,
    })
}

/// Base64 bytes (Go `[]byte`), e.g. a PEM CA bundle.
pub(crate) fn bytes(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "format": "byte",
        "nullable": true,
    })
}

/// The structural schema of `T`, generated the way `kube::CustomResource` does.
pub(crate) fn structural_schema<T: JsonSchema>() -> JSONSchemaProps {
    let generator = schemars::generate::SchemaSettings::openapi3()
        .with(|s| {
            s.inline_subschemas = true;
            s.meta_schema = None;
        })
        .with_transform(schemars::transform::AddNullable::default())
        .with_transform(kube::core::schema::StructuralSchemaRewriter)
        .with_transform(kube::core::schema::OptionalEnum)
        .with_transform(kube::core::schema::OptionalIntOrString)
        .into_generator();
    let schema = generator.into_root_schema_for::<T>();
    // Both sides are JSON Schema documents; this cannot fail for a derived schema.
    serde_json::to_value(schema)
        .and_then(serde_json::from_value)
        .unwrap_or_default()
}

/// What a CRD for a kind with top-level fields needs beyond its schema.
pub(crate) struct TopLevelKind<'a> {
    pub kind: &'a str,
    pub plural: &'a str,
    pub namespaced: bool,
    pub printer_columns: &'a [(&'a str, &'a str)],
}

/// A CRD for a kind whose fields sit next to `metadata` (no `spec`).
pub(crate) fn top_level_crd<T: JsonSchema>(def: &TopLevelKind<'_>) -> CustomResourceDefinition {
    let mut schema = structural_schema::<T>();
    if let Some(properties) = schema.properties.as_mut() {
        properties.insert(
            "metadata".to_owned(),
            JSONSchemaProps {
                type_: Some("object".to_owned()),
                ..Default::default()
            },
        );
        for field in ["apiVersion", "kind"] {
            properties.insert(
                field.to_owned(),
                JSONSchemaProps {
                    type_: Some("string".to_owned()),
                    ..Default::default()
                },
            );
        }
    }
    let columns: Vec<serde_json::Value> = def
        .printer_columns
        .iter()
        .map(|(name, path)| serde_json::json!({"name": name, "type": "string", "jsonPath": path}))
        .collect();
    let crd = serde_json::json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{}.{}", def.plural, crate::GROUP)},
        "spec": {
            "group": crate::GROUP,
            "names": {
                "kind": def.kind,
                "plural": def.plural,
                "singular": def.kind.to_lowercase(),
            },
            "scope": if def.namespaced { "Namespaced" } else { "Cluster" },
            "versions": [{
                "name": crate::VERSION,
                "served": true,
                "storage": true,
                "schema": {"openAPIV3Schema": schema},
                "additionalPrinterColumns": columns,
            }],
        },
    });
    serde_json::from_value(crd).unwrap_or_default()
}

/// Implements `kube::Resource` for a kind with top-level fields.
macro_rules! top_level_resource {
    ($type:ty, $kind:literal, $plural:literal, $scope:ty) => {
        impl $type {
            /// An empty object with this name, `apiVersion` and `kind` set.
            pub fn new(name: &str) -> Self {
                Self {
                    types: kube::core::TypeMeta {
                        api_version: format!("{}/{}", crate::GROUP, crate::VERSION),
                        kind: $kind.to_owned(),
                    },
                    metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                        name: Some(name.to_owned()),
                        ..Default::default()
                    },
                    ..Default::default()
                }
            }
        }

        impl kube::Resource for $type {
            type DynamicType = ();
            type Scope = $scope;

            fn kind(_: &()) -> std::borrow::Cow<'_, str> {
                $kind.into()
            }
            fn group(_: &()) -> std::borrow::Cow<'_, str> {
                crate::GROUP.into()
            }
            fn version(_: &()) -> std::borrow::Cow<'_, str> {
                crate::VERSION.into()
            }
            fn plural(_: &()) -> std::borrow::Cow<'_, str> {
                $plural.into()
            }
            fn meta(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                &self.metadata
            }
            fn meta_mut(
                &mut self,
            ) -> &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                &mut self.metadata
            }
        }
    };
}
pub(crate) use top_level_resource;
