//! Schema helpers: what `schemars` cannot say from the Rust types alone, and CRDs for the
//! kinds whose fields sit at the top level (Fleet's Content, BundleNamespaceMapping,
//! GitRepoRestriction), which `kube::CustomResource` cannot derive.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSON, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde_json::json;

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

/// A label key: an optional DNS-subdomain prefix and `/`, then a name of at most 63
/// characters (Kubernetes' `IsQualifiedName`).
pub const LABEL_KEY_PATTERN: &str = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$";

/// A label value: empty, or at most 63 characters (Kubernetes' `IsValidLabelValue`).
pub const LABEL_VALUE_PATTERN: &str = r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$";

/// An optional `metav1.LabelSelector`, validated by the API server as far as a structural
/// schema can without CEL (a CEL rule inside Fleet's unbounded target lists is over the API
/// server's cost budget): the operator is one of the four, `In`/`NotIn` need values and
/// `Exists`/`DoesNotExist` take none (added by [`require_expression_values`]: kube's schema
/// rewriter cannot carry it), expression keys and all values are well-formed. What a schema
/// cannot say (the keys of `matchLabels`) is reported in a condition by the controller.
pub(crate) fn label_selector(_: &mut SchemaGenerator) -> Schema {
    let value = json!({"type": "string", "maxLength": 63, "pattern": LABEL_VALUE_PATTERN});
    json_schema!({
        "type": "object",
        "nullable": true,
        "description": "A label selector (matchLabels and matchExpressions are ANDed).",
        "properties": {
            "matchLabels": {
                "type": "object",
                "additionalProperties": value,
            },
            "matchExpressions": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["key", "operator"],
                    "properties": {
                        "key": {"type": "string", "maxLength": 317, "pattern": LABEL_KEY_PATTERN},
                        "operator": {
                            "type": "string",
                            "enum": ["In", "NotIn", "Exists", "DoesNotExist"],
                        },
                        "values": {"type": "array", "items": value},
                    },
                },
            },
        },
    })
}

/// Adds to every label selector expression of `schema` the rule `label_selector` states:
/// `In`/`NotIn` with at least one value, `Exists`/`DoesNotExist` with none (an `anyOf` of
/// value validations, which a structural schema allows and which costs no CEL budget).
pub(crate) fn require_expression_values(schema: &mut JSONSchemaProps) {
    let is_expression = schema.properties.as_ref().is_some_and(|p| {
        p.get("operator")
            .and_then(|o| o.enum_.as_ref())
            .is_some_and(|e| e.len() == 4)
            && p.contains_key("values")
    });
    if is_expression {
        let branch =
            |operators: [&str; 2], values: JSONSchemaProps, required: bool| JSONSchemaProps {
                required: required.then(|| vec!["values".to_owned()]),
                properties: Some(
                    [
                        (
                            "operator".to_owned(),
                            JSONSchemaProps {
                                enum_: Some(operators.iter().map(|o| JSON(json!(o))).collect()),
                                ..JSONSchemaProps::default()
                            },
                        ),
                        ("values".to_owned(), values),
                    ]
                    .into(),
                ),
                ..JSONSchemaProps::default()
            };
        schema.any_of = Some(vec![
            branch(
                ["In", "NotIn"],
                JSONSchemaProps {
                    min_items: Some(1),
                    ..JSONSchemaProps::default()
                },
                true,
            ),
            branch(
                ["Exists", "DoesNotExist"],
                JSONSchemaProps {
                    max_items: Some(0),
                    ..JSONSchemaProps::default()
                },
                false,
            ),
        ]);
    }
    for child in schema.properties.iter_mut().flat_map(|p| p.values_mut()) {
        require_expression_values(child);
    }
    if let Some(JSONSchemaPropsOrArray::Schema(items)) = schema.items.as_mut() {
        require_expression_values(items);
    }
    if let Some(JSONSchemaPropsOrBool::Schema(values)) = schema.additional_properties.as_mut() {
        require_expression_values(values);
    }
}
