//! The contender's JSON-lines trace, and the analysis tests and the failover benchmark share:
//! leadership terms as seen from the work's side, and overlaps between them.

use serde::{Deserialize, Serialize};

/// One line of `fleet-election-contender` output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceEvent {
    /// Wall-clock milliseconds since the Unix epoch (one machine: comparable across processes).
    pub ts_ms: f64,
    pub identity: String,
    /// `ready`, `attempting`, `acquired`, `renew_failed`, `lost`, `released`, `new_leader`,
    /// `act` (the work acted while `still_leading()` was true) or `exited`.
    pub event: String,
    /// The leadership term of this process (1 for its first acquire), on `acquired`, `act`,
    /// `lost` and `released`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl TraceEvent {
    /// Parses a line; `None` for lines that are not trace events (e.g. logs).
    pub fn parse(line: &str) -> Option<Self> {
        serde_json::from_str(line).ok()
    }
}

/// The events in a contender's log file (its other lines, e.g. logs, are skipped). A file not
/// written yet reads as no events.
pub fn read_file(path: &std::path::Path) -> Vec<TraceEvent> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(TraceEvent::parse)
        .collect()
}

/// Whether the last leadership event (`acquired`, `lost` or `released`) is `acquired`.
pub fn is_leading(events: &[TraceEvent]) -> bool {
    events
        .iter()
        .rev()
        .find(|e| matches!(e.event.as_str(), "acquired" | "lost" | "released"))
        .is_some_and(|e| e.event == "acquired")
}

/// The span during which one process's work acted in one term: from its first to its last
/// `act` event.
#[derive(Debug, Clone, PartialEq)]
pub struct ActingSpan {
    pub identity: String,
    pub term: u64,
    pub first_ms: f64,
    pub last_ms: f64,
}

/// Acting spans of every (identity, term) in the events.
pub fn acting_spans(events: &[TraceEvent]) -> Vec<ActingSpan> {
    let mut spans: Vec<ActingSpan> = Vec::new();
    for event in events.iter().filter(|e| e.event == "act") {
        let term = event.term.unwrap_or_default();
        match spans
            .iter_mut()
            .find(|s| s.identity == event.identity && s.term == term)
        {
            Some(span) => {
                span.first_ms = span.first_ms.min(event.ts_ms);
                span.last_ms = span.last_ms.max(event.ts_ms);
            }
            None => spans.push(ActingSpan {
                identity: event.identity.clone(),
                term,
                first_ms: event.ts_ms,
                last_ms: event.ts_ms,
            }),
        }
    }
    spans
}

/// Pairs of acting spans of different processes that overlap in time: two replicas acting
/// at once. Must always be empty.
pub fn overlaps(events: &[TraceEvent]) -> Vec<(ActingSpan, ActingSpan)> {
    let spans = acting_spans(events);
    let mut found = Vec::new();
    for (i, a) in spans.iter().enumerate() {
        for b in &spans[i + 1..] {
            if a.identity != b.identity && a.first_ms <= b.last_ms && b.first_ms <= a.last_ms {
                found.push((a.clone(), b.clone()));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn act(identity: &str, term: u64, ts_ms: f64) -> TraceEvent {
        TraceEvent {
            ts_ms,
            identity: identity.to_owned(),
            event: "act".to_owned(),
            term: Some(term),
            failover_ms: None,
            detail: None,
        }
    }

    #[test]
    fn sequential_terms_do_not_overlap() {
        let events = [
            act("a", 1, 0.0),
            act("a", 1, 100.0),
            act("b", 1, 150.0),
            act("b", 1, 300.0),
            act("a", 2, 350.0),
        ];
        assert_eq!(acting_spans(&events).len(), 3);
        assert!(overlaps(&events).is_empty());
    }

    #[test]
    fn interleaved_acts_are_an_overlap() {
        let events = [act("a", 1, 0.0), act("b", 1, 50.0), act("a", 1, 100.0)];
        let found = overlaps(&events);
        assert_eq!(found.len(), 1);
        assert_eq!(
            (found[0].0.identity.as_str(), found[0].1.identity.as_str()),
            ("a", "b")
        );
    }

    #[test]
    fn lines_round_trip_and_logs_are_skipped() {
        let event = act("a", 3, 12.5);
        let line = serde_json::to_string(&event).expect("serialise");
        assert_eq!(TraceEvent::parse(&line), Some(event));
        assert_eq!(
            TraceEvent::parse("2026-11-22T23:00:00Z INFO acquired"),
            None
        );
    }
}
