//! The syntax of label keys and values, as Kubernetes validates them (`IsQualifiedName`,
//! `IsValidLabelValue`): the checks a selector gets before it is trusted to match anything.
//! The CRD schemas say the same with patterns where a schema can (`matchLabels` keys are the
//! exception).

/// Why a label key or value is not valid, in Kubernetes' words.
pub fn label_key_error(key: &str) -> Option<String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix
        && !is_dns_subdomain(prefix)
    {
        return Some(format!(
            "invalid label key {key:?}: the prefix must be a DNS subdomain (lowercase \
             alphanumerics, '-' and '.', at most 253 characters)"
        ));
    }
    (!is_label_name(name) || name.is_empty()).then(|| {
        format!(
            "invalid label key {key:?}: the name must be 1 to 63 alphanumerics, '-', '_' or \
             '.', starting and ending with an alphanumeric, after an optional DNS subdomain and '/'"
        )
    })
}

/// Why a label value is not valid (empty is valid).
pub fn label_value_error(value: &str) -> Option<String> {
    (!is_label_name(value)).then(|| {
        format!(
            "invalid label value {value:?}: at most 63 alphanumerics, '-', '_' or '.', starting \
             and ending with an alphanumeric"
        )
    })
}

/// Empty, or at most 63 of `[-A-Za-z0-9_.]` starting and ending alphanumeric.
fn is_label_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    match (bytes.first(), bytes.last()) {
        (None, _) | (_, None) => true,
        (Some(first), Some(last)) => {
            bytes.len() <= 63
                && first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        }
    }
}

/// Lowercase DNS-1123 labels joined by dots, at most 253 characters.
fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            let bytes = label.as_bytes();
            !bytes.is_empty()
                && bytes.len() <= 63
                && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
                && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_as_kubernetes_validates_them() {
        let long = "a".repeat(63);
        let too_long = "a".repeat(64);
        let long_prefix = format!("{}.{}/x", "a".repeat(63), "b".repeat(190));
        let valid = [
            "env",
            "fleet.cattle.io/cluster",
            "management.cattle.io/cluster-display-name",
            "a_b.c-d",
            "A",
            "1",
            long.as_str(),
            "example.com/Tier_1",
        ];
        for key in valid {
            assert_eq!(label_key_error(key), None, "{key}");
        }
        let invalid = [
            "",
            "-env",
            "env-",
            "bad key",
            "Example.com/env",
            "/env",
            "example.com/",
            "a/b/c",
            "ex_ample.com/env",
            "example..com/env",
            too_long.as_str(),
            long_prefix.as_str(),
            "env!",
            "ünï",
        ];
        for key in invalid {
            assert!(label_key_error(key).is_some(), "{key}");
        }
    }

    #[test]
    fn values_as_kubernetes_validates_them() {
        for value in ["", "prod", "v1.2_3-x", &"a".repeat(63)] {
            assert_eq!(label_value_error(value), None, "{value}");
        }
        for value in ["-prod", "prod.", "a b", "a/b", &"a".repeat(64)] {
            assert!(label_value_error(value).is_some(), "{value}");
        }
    }
}
