//! Go's `time.Duration` syntax, which Fleet's fields (`pollingInterval`, a registration
//! token's `ttl`, `helm.timeout`...) and its `CATTLE_ELECTION_*` variables use: one parser for
//! every crate's API fields and flags.

use std::time::Duration;

/// Parses a Go `time.Duration` string (`300ms`, `1.5s`, `2m30s`, `1h`), the syntax of Fleet's
/// duration fields and `CATTLE_ELECTION_*` variables. A bare `0` is zero; negative durations are refused.
pub fn parse_go_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.is_empty() || text.starts_with('-') {
        return Err(format!(
            "invalid duration {text:?}: expected e.g. 15s, 500ms or 1m30s"
        ));
    }
    let mut total = 0f64;
    let mut rest = text.trim_start_matches('+');
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| {
                format!("invalid duration {text:?}: missing unit (ns, us, ms, s, m, h)")
            })?;
        let (number, tail) = rest.split_at(number_len);
        let value: f64 = number
            .parse()
            .map_err(|_| format!("invalid duration {text:?}: bad number {number:?}"))?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let seconds_per_unit = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(format!("invalid duration {text:?}: unknown unit {unit:?}")),
        };
        total += value * seconds_per_unit;
        rest = tail;
    }
    Duration::try_from_secs_f64(total).map_err(|e| format!("invalid duration {text:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        let cases = [
            ("15s", 15_000),
            ("500ms", 500),
            ("1m30s", 90_000),
            ("1.5s", 1_500),
            ("1h", 3_600_000),
            ("0", 0),
            ("2us", 0),
        ];
        for (text, millis) in cases {
            assert_eq!(
                parse_go_duration(text).map(|d| d.as_millis()),
                Ok(millis),
                "{text}"
            );
        }
        for bad in ["", "15", "-1s", "1x", "s", "1..5s"] {
            assert!(parse_go_duration(bad).is_err(), "{bad:?} must be refused");
        }
    }
}
