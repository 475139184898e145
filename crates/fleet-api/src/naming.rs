//! Bundle and release names, exactly as Fleet derives them (`internal/names` in Fleet), so
//! that a repository produces the same Bundle names under fleet-rs as under Fleet.

use md5::{Digest, Md5};

/// Helm's limit on release names; Bundle names follow it.
pub const MAX_RELEASE_NAME_LEN: usize = 53;

/// The first `length` hex digits of the MD5 of `s` (a name suffix, not security).
pub fn hex(s: &str, length: usize) -> String {
    let digest = Md5::digest(s.as_bytes());
    let mut out = String::with_capacity(32);
    for byte in digest {
        out.push_str(&format!("{byte:02x}"));
    }
    out.truncate(length);
    out
}

/// Truncates `s` to `count` characters, ending in `-` and a 5-digit hash of the whole string
/// when it had to be cut (no double dash: a cut ending in `-` keeps that one).
pub fn limit(s: &str, count: usize) -> String {
    const HEX_LEN: usize = 5;
    if s.len() <= count {
        return s.to_owned();
    }
    if count <= HEX_LEN + 1 {
        return s[..count].to_owned();
    }
    let keep = count - HEX_LEN - 1;
    let separator = if s.as_bytes()[keep - 1] == b'-' {
        ""
    } else {
        "-"
    };
    format!("{}{separator}{}", &s[..keep], hex(s, HEX_LEN))
}

fn is_allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-'
}

/// A DNS-label-safe Helm release name from any string (e.g. `<gitrepo>/<path>`): `/` becomes
/// `-`, the result is lowercased and other characters become `-`; if case or characters had
/// to change, an 8-digit hash keeps distinct inputs distinct; at most 53 characters.
pub fn helm_release_name(input: &str) -> String {
    let replaced = input.replace('/', "-");
    let needs_hash = replaced != replaced.to_lowercase() || !replaced.chars().all(is_allowed);
    let with_hash = if needs_hash {
        format!("{replaced}-{}", hex(&replaced, 8))
    } else {
        replaced
    };
    let mut cleaned = String::with_capacity(with_hash.len());
    for c in with_hash.to_lowercase().chars() {
        let c = if is_allowed(c) { c } else { '-' };
        if !(c == '-' && cleaned.ends_with('-')) {
            cleaned.push(c);
        }
    }
    let cleaned = cleaned.trim_matches('-');
    if cleaned.is_empty() {
        // Nothing usable is left: Fleet falls back to a checksum of the input.
        return hex(input, 24);
    }
    limit(cleaned, MAX_RELEASE_NAME_LEN)
}

/// Where a chart downloaded when its Bundle was built lives among the Bundle's resources:
/// `.chart/<sha256 of "chart:repo:version">`, as Fleet's reader names it (`checksum`).
pub fn embedded_chart_dir(chart: &str, repo: &str, version: &str) -> String {
    use sha2::{Digest as _, Sha256};
    let digest = Sha256::digest(format!("{chart}:{repo}:{version}").as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!(".chart/{hex}")
}

/// Fleet's `KeyHash`: the first 12 hex digits of the SHA-256 of (at most the first 100
/// bytes of) `s`.
pub fn key_hash(s: &str) -> String {
    use sha2::{Digest as _, Sha256};
    let bytes = &s.as_bytes()[..s.len().min(100)];
    Sha256::digest(bytes)
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// wrangler's `SafeConcatName`: the parts joined by `-`; above 63 characters, the first 57
/// (without trailing non-alphanumerics), `-`, and 5 hex digits of the SHA-256 of the whole.
pub fn safe_concat_name(parts: &[&str]) -> String {
    use sha2::{Digest as _, Sha256};
    let full = parts.join("-");
    if full.len() < 64 {
        return full;
    }
    let digest: String = Sha256::digest(full.as_bytes())
        .iter()
        .take(3)
        .map(|b| format!("{b:02x}"))
        .collect();
    let head = full[..57].trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
    format!("{head}-{}", &digest[..5])
}

/// The namespace holding a Cluster's BundleDeployments, as Fleet names it:
/// `cluster-<namespace>-<name>-<key hash of "namespace::name">`, shortened to 63 characters.
pub fn cluster_namespace(cluster_namespace: &str, cluster_name: &str) -> String {
    let hash = key_hash(&format!("{cluster_namespace}::{cluster_name}"));
    safe_concat_name(&["cluster", cluster_namespace, cluster_name, &hash])
}

#[cfg(test)]
mod tests {
    use super::*;

    const STR50: &str = "12345678901234567890123456789012345678901234567890";

    #[test]
    fn limit_matches_fleet() {
        let cases = [
            ("1234567", 5, "12345"),
            ("1234567", 6, "123456"),
            ("1234567", 7, "1234567"),
            ("1234567", 8, "1234567"),
            ("12345678", 8, "12345678"),
            ("12345678", 7, "1-25d55"),
            ("123456789", 8, "12-25f9e"),
            ("1-3456789", 8, "1-9b657"),
        ];
        for (input, count, expected) in cases {
            assert_eq!(limit(input, count), expected, "limit({input:?}, {count})");
        }
    }

    #[test]
    fn helm_release_names_match_fleet() {
        let str53 = format!("{STR50}123");
        let str63 = format!("{STR50}1234567890123");
        let cases = [
            (str53.clone(), str53.clone()),
            (
                format!("{str53}a"),
                "12345678901234567890123456789012345678901234567-fdba4".to_owned(),
            ),
            (
                format!("{str63}a"),
                "12345678901234567890123456789012345678901234567-eb12d".to_owned(),
            ),
            (
                "long-name-test-shortpath-with@char".to_owned(),
                "long-name-test-shortpath-with-char-031bab5e".to_owned(),
            ),
            (
                "long-name-test-shortpath-with+char".to_owned(),
                "long-name-test-shortpath-with-char-21c88393".to_owned(),
            ),
            (
                "long-name-test-0.App_ ".to_owned(),
                "long-name-test-0-app-5bf6b3fb".to_owned(),
            ),
            (
                "long-name-test--App_-_12.factor".to_owned(),
                "long-name-test-app-12-factor-0efbac37".to_owned(),
            ),
            (
                "bundle.name.example.com".to_owned(),
                "bundle-name-example-com-645ef821".to_owned(),
            ),
            (
                format!("{}-1234567", &str53[..46]),
                "1234567890123456789012345678901234567890123456-d0bce".to_owned(),
            ),
            (
                "one/multi-cluster/hello-world".to_owned(),
                "one-multi-cluster-hello-world".to_owned(),
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(helm_release_name(&input), expected, "{input:?}");
        }
    }

    #[test]
    fn only_invalid_characters_leave_the_hash_and_empty_input_a_checksum() {
        let name = helm_release_name("@@@");
        assert_eq!(
            name,
            hex("@@@", 8),
            "the appended hash is all that survives"
        );
        assert_eq!(helm_release_name(""), hex("", 24));
    }

    #[test]
    fn cluster_namespaces_follow_fleets_pattern() {
        let ns = cluster_namespace("fleet-local", "local");
        assert!(ns.starts_with("cluster-fleet-local-local-"), "{ns}");
        assert_eq!(ns.len(), "cluster-fleet-local-local-".len() + 12);
        let long = cluster_namespace("fleet-default", &"c".repeat(80));
        assert_eq!(long.len(), 63, "{long}");
        assert_eq!(key_hash("a").len(), 12);
    }
}
