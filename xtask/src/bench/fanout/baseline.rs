//! The replicas against one leader, measured in the same run: with `--replicas R` (R > 1) the
//! benchmark first runs the same fleet with one leader on a control plane of its own, then
//! prints each replica's peak RSS, growth and update-wave peak as a share of the one
//! leader's (the scale-out's memory target: at most half), and both fan-out times.

use std::time::Duration;

use super::report::{Mibs, Report, growth};

/// What the comparison reads of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    pub fan_out: Duration,
    /// The fan-out's rate as a share of that control plane's raw create rate, in percent.
    pub share_of_raw: f64,
    pub peak: Mibs,
    pub growth: Mibs,
    pub update_peak: Mibs,
}

impl Measured {
    pub fn of(report: &Report) -> Self {
        let fan_out = report.fan_out.elapsed;
        let rate = report.total as f64 / fan_out.as_secs_f64().max(f64::EPSILON);
        Self {
            fan_out,
            share_of_raw: 100.0 * rate / report.raw.watched,
            peak: report.memory.peak.clone(),
            growth: growth(&report.memory.peak, &report.memory.before),
            update_peak: report.update.peak.clone(),
        }
    }
}

/// The lines comparing `replicas` with the `leader` run.
pub fn lines(leader: &Measured, replicas: &Measured) -> Vec<String> {
    let mut lines = vec![format!(
        "fan-out: one leader {:.2}s ({:.0}% of its raw rate); the replicas {:.2}s ({:.0}% of theirs)",
        leader.fan_out.as_secs_f64(),
        leader.share_of_raw,
        replicas.fan_out.as_secs_f64(),
        replicas.share_of_raw
    )];
    for (what, one, each) in [
        ("peak RSS", &leader.peak, &replicas.peak),
        (
            "peak RSS growth over the fan-out",
            &leader.growth,
            &replicas.growth,
        ),
        (
            "peak RSS during the update wave",
            &leader.update_peak,
            &replicas.update_peak,
        ),
    ] {
        lines.push(shares(what, one.first().copied().flatten(), each));
    }
    lines
}

/// `what` of each replica as a share of the one leader's, and the largest share.
fn shares(what: &str, leader: Option<f64>, replicas: &[Option<f64>]) -> String {
    let Some(leader) = leader.filter(|l| *l > 0.0) else {
        return format!("{what}: the one leader's is unknown");
    };
    let each: Vec<Option<f64>> = replicas
        .iter()
        .map(|r| r.map(|r| 100.0 * r / leader))
        .collect();
    let listed: Vec<String> = replicas
        .iter()
        .zip(&each)
        .map(|(mib, share)| match (mib, share) {
            (Some(mib), Some(share)) => format!("{mib:.1} MiB ({share:.0}%)"),
            _ => "unknown".to_owned(),
        })
        .collect();
    let largest = each
        .iter()
        .flatten()
        .copied()
        .fold(None, |max: Option<f64>, s| {
            Some(max.map_or(s, |m| m.max(s)))
        });
    format!(
        "{what}: one leader {leader:.1} MiB; per replica {}; the largest {}% of the one leader's",
        listed.join(", "),
        largest.map_or_else(|| "unknown".to_owned(), |s| format!("{s:.0}"))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured(secs: u64, share: f64, peak: &[Option<f64>], growth: &[Option<f64>]) -> Measured {
        Measured {
            fan_out: Duration::from_secs(secs),
            share_of_raw: share,
            peak: peak.to_vec(),
            growth: growth.to_vec(),
            update_peak: peak.to_vec(),
        }
    }

    #[test]
    fn each_replica_is_a_share_of_the_one_leader() {
        let leader = measured(30, 50.0, &[Some(80.0)], &[Some(40.0)]);
        let cases = [
            (
                "three replicas",
                measured(
                    20,
                    75.0,
                    &[Some(40.0), Some(60.0), Some(20.0)],
                    &[Some(10.0), Some(30.0), Some(8.0)],
                ),
                [
                    "fan-out: one leader 30.00s (50% of its raw rate); the replicas 20.00s (75% of theirs)",
                    "peak RSS: one leader 80.0 MiB; per replica 40.0 MiB (50%), 60.0 MiB (75%), 20.0 MiB (25%); the largest 75% of the one leader's",
                    "peak RSS growth over the fan-out: one leader 40.0 MiB; per replica 10.0 MiB (25%), 30.0 MiB (75%), 8.0 MiB (20%); the largest 75% of the one leader's",
                ],
            ),
            (
                "a replica not measured",
                measured(20, 75.0, &[None, Some(40.0)], &[None, Some(20.0)]),
                [
                    "fan-out: one leader 30.00s (50% of its raw rate); the replicas 20.00s (75% of theirs)",
                    "peak RSS: one leader 80.0 MiB; per replica unknown, 40.0 MiB (50%); the largest 50% of the one leader's",
                    "peak RSS growth over the fan-out: one leader 40.0 MiB; per replica unknown, 20.0 MiB (50%); the largest 50% of the one leader's",
                ],
            ),
        ];
        for (case, replicas, expected) in cases {
            let lines = lines(&leader, &replicas);
            assert_eq!(lines[..3], expected, "{case}");
        }
    }

    #[test]
    fn an_unknown_leader_is_said_so() {
        let leader = measured(30, 50.0, &[None], &[None]);
        let replicas = measured(20, 75.0, &[Some(40.0)], &[Some(10.0)]);
        assert_eq!(
            lines(&leader, &replicas)[1],
            "peak RSS: the one leader's is unknown"
        );
    }
}
