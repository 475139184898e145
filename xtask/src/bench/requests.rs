//! What a benchmark costs the API server: its request counters
//! (`apiserver_request_total`) by verb and resource, and the watches it closed as too slow
//! (`apiserver_terminated_watchers_total`), read from its `/metrics` before and after; and the
//! CPU time of the processes under test.

use std::collections::BTreeMap;

use kube::Client;

/// `apiserver_request_total` summed by `VERB resource[/subresource]` (e.g. `APPLY
/// clusters/status`) for the requests that succeeded, and by `VERB resource (code)` for the
/// others, for the resources of `group`.
pub async fn requests(client: &Client, group: &str) -> anyhow::Result<BTreeMap<String, f64>> {
    let request = http::Request::get("/metrics").body(Vec::new())?;
    let text = client.request_text(request).await?;
    let mut counts = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("apiserver_terminated_watchers_total{") {
            closed_watches(rest, group, &mut counts);
            continue;
        }
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let Some(key) = request_key(labels, group) else {
            continue;
        };
        *counts.entry(key).or_insert(0.0) += value.trim().parse::<f64>().unwrap_or(0.0);
    }
    Ok(counts)
}

/// The key a line of `apiserver_request_total` with these labels is counted under, if it is
/// for a resource of `group`: `VERB resource[/subresource]`, and ` (code)` after it when the
/// request did not succeed (a write cut off by a killed client, or answered with a conflict,
/// wrote nothing).
fn request_key(labels: &str, group: &str) -> Option<String> {
    let label = |name: &str| label_value(labels, name);
    if label("group") != group {
        return None;
    }
    let mut key = format!("{} {}", label("verb"), label("resource"));
    if !label("subresource").is_empty() {
        key = format!("{key}/{}", label("subresource"));
    }
    let code = label("code");
    if !code.starts_with('2') {
        key = format!("{key} ({code})");
    }
    Some(key)
}

/// Adds a line of `apiserver_terminated_watchers_total` (watches the API server closed because
/// their client did not read its events in time) for a resource of `group` to `counts`, as
/// `CLOSED-SLOW WATCH <resource>`. Its labels are `group` and `resource` (and, lately,
/// `reason`); older API servers label `resource="<resource>.<group>"` only.
fn closed_watches(rest: &str, group: &str, counts: &mut BTreeMap<String, f64>) {
    let Some((labels, value)) = rest.rsplit_once("} ") else {
        return;
    };
    let resource = label_value(labels, "resource");
    let resource = if label_value(labels, "group") == group {
        resource
    } else {
        match resource.strip_suffix(&format!(".{group}")) {
            Some(resource) => resource,
            None => return,
        }
    };
    *counts
        .entry(format!("CLOSED-SLOW WATCH {resource}"))
        .or_insert(0.0) += value.trim().parse::<f64>().unwrap_or(0.0);
}

/// The value of label `name` in a metric line's `a="1",b="2"`, or "".
fn label_value<'a>(labels: &'a str, name: &str) -> &'a str {
    labels
        .split(',')
        .find_map(|l| l.strip_prefix(name)?.strip_prefix("=\""))
        .map(|v| v.trim_end_matches('"'))
        .unwrap_or_default()
}

/// The requests between two readings of [`requests`], those that happened, largest first.
pub fn delta(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> String {
    let mut counts: Vec<(&String, f64)> = after
        .iter()
        .map(|(key, n)| (key, n - before.get(key).copied().unwrap_or(0.0)))
        .filter(|(_, n)| *n > 0.0)
        .collect();
    counts.sort_by(|a, b| b.1.total_cmp(&a.1));
    let listed: Vec<String> = counts.iter().map(|(k, n)| format!("{k} {n:.0}")).collect();
    listed.join(", ")
}

/// CPU seconds (user + system) the process `pid` has used so far.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the parenthesised command name; utime and stime are the 14th and
    // 15th of the line, the 12th and 13th after it.
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_that_failed_are_counted_apart_with_their_code() {
        let key = |labels: &str| request_key(labels, "fleet.cattle.io");
        let cases = [
            (
                r#"code="201",group="fleet.cattle.io",resource="bundledeployments",subresource="",verb="POST""#,
                Some("POST bundledeployments"),
            ),
            (
                r#"code="409",group="fleet.cattle.io",resource="bundledeployments",subresource="",verb="POST""#,
                Some("POST bundledeployments (409)"),
            ),
            (
                r#"code="200",group="fleet.cattle.io",resource="clusters",subresource="status",verb="APPLY""#,
                Some("APPLY clusters/status"),
            ),
            (
                r#"code="201",group="",resource="pods",subresource="",verb="POST""#,
                None,
            ),
        ];
        for (labels, want) in cases {
            assert_eq!(key(labels).as_deref(), want, "{labels}");
        }
    }

    #[test]
    fn closed_watches_are_read_with_either_labelling() {
        let mut counts = BTreeMap::new();
        for line in [
            r#"group="fleet.cattle.io",reason="unresponsive",resource="bundledeployments"} 3"#,
            r#"resource="bundledeployments.fleet.cattle.io"} 2"#,
            r#"group="",reason="unresponsive",resource="pods"} 7"#,
        ] {
            closed_watches(line, "fleet.cattle.io", &mut counts);
        }
        assert_eq!(
            counts,
            BTreeMap::from([("CLOSED-SLOW WATCH bundledeployments".to_owned(), 5.0)])
        );
    }
}
