//! What the fan-out benchmark prints.

use std::time::Duration;

use super::outage::{Kill, Outage};
use super::raw::RawRates;

/// RSS of each replica, in MiB (`None`: not readable, e.g. a killed replica's).
pub type Mibs = Vec<Option<f64>>;

/// Each replica's memory, from `/proc/<pid>/status`.
#[derive(Debug)]
pub struct Memory {
    pub before: Mibs,
    pub peak: Mibs,
    pub after: Mibs,
    pub file_backed: Mibs,
}

/// What one fan-out measured.
#[derive(Debug)]
pub struct FanOut {
    /// Until every BundleDeployment was seen.
    pub elapsed: Duration,
    /// API requests during the fan-out, by verb and resource.
    pub requests: String,
    /// BundleDeployment writes beyond one per object.
    pub extra_writes: f64,
    /// CPU seconds per surviving replica.
    pub cpu: Vec<f64>,
    /// With `--kill-one`: the replica killed, and when the others took over.
    pub kill: Option<Kill>,
    /// With `--kill-one` and dynamic shards: what the killed replica's death paused.
    pub outage: Option<Outage>,
}

/// What the update wave after the fan-out measured (every Bundle changed at once).
#[derive(Debug)]
pub struct UpdateWave {
    /// Until every BundleDeployment deployed the new manifest.
    pub elapsed: Duration,
    /// API requests during it, by verb and resource.
    pub requests: String,
    /// BundleDeployment writes beyond one per object.
    pub extra_writes: f64,
    /// RSS when it started.
    pub before: Mibs,
    /// Peak RSS during it.
    pub peak: Mibs,
}

/// Everything the benchmark prints.
#[derive(Debug)]
pub struct Report {
    pub server: String,
    pub settings: String,
    pub total: usize,
    pub raw: RawRates,
    pub fan_out: FanOut,
    pub memory: Memory,
    /// Since the fan-out started, until every Cluster's status counted its BundleDeployments.
    pub statuses: Result<Duration, String>,
    /// Clusters whose status counts all their BundleDeployments, of how many.
    pub rolled_up: (usize, usize),
    pub idle_writes: f64,
    pub update: UpdateWave,
}

impl Report {
    pub fn print(&self) {
        let Self { raw, fan_out, .. } = self;
        let elapsed = fan_out.elapsed.as_secs_f64();
        let rate = self.total as f64 / elapsed;
        println!(
            "fanout benchmark (release fleet-controller, local control plane {})",
            self.server
        );
        println!("{}", self.settings);
        println!(
            "raw client create rate: {:.0}/s observed by the watch that counts the fan-out ({:.0}/s alone)",
            raw.watched, raw.alone
        );
        println!(
            "controller: all BundleDeployments in {elapsed:.2}s = {rate:.0}/s ({:.0}% of raw)",
            100.0 * rate / raw.watched
        );
        println!("API requests during the fan-out: {}", fan_out.requests);
        println!(
            "BundleDeployment writes beyond one per object (overlapping or stale writers; must be 0): {:.0}{}",
            fan_out.extra_writes,
            if fan_out.extra_writes < 0.0 {
                " (fewer writes succeeded than objects exist: a write cut off by the kill was done by the API server all the same)"
            } else {
                ""
            }
        );
        let cpu: Vec<String> = fan_out.cpu.iter().map(|s| format!("{s:.1}s")).collect();
        println!(
            "controller CPU during the fan-out per replica: {}",
            cpu.join(", ")
        );
        self.print_memory();
        if let Some(outage) = &fan_out.outage {
            for line in outage.lines() {
                println!("  {line}");
            }
        } else if let Some(kill) = &fan_out.kill {
            let which = if kill.led { "the leader" } else { "a standby" };
            println!(
                "one replica ({which}) SIGKILLed during the fan-out: one of the others led {:.2}s later",
                kill.owned_again
                    .saturating_duration_since(kill.at)
                    .as_secs_f64()
            );
        }
        match &self.statuses {
            Ok(after) => println!(
                "every Cluster's status counts its BundleDeployments after {:.2}s ({:.2}s after the last one)",
                after.as_secs_f64(),
                after.as_secs_f64() - elapsed
            ),
            Err(e) => println!("Cluster statuses: {e}"),
        }
        let (rolled_up, clusters) = self.rolled_up;
        println!(
            "clusters whose status counts all their BundleDeployments: {rolled_up}/{clusters}"
        );
        println!(
            "writes of an idle resync of every Bundle: {}",
            self.idle_writes
        );
        self.print_update();
    }

    fn print_update(&self) {
        let update = &self.update;
        let elapsed = update.elapsed.as_secs_f64();
        println!(
            "update wave (every Bundle changed at once): all BundleDeployments updated in {elapsed:.2}s = {:.0}/s; writes beyond one per object: {:.0}",
            self.total as f64 / elapsed,
            update.extra_writes
        );
        println!("API requests during the update wave: {}", update.requests);
        println!(
            "controller peak RSS per replica during the update wave: {} (RSS at its start: {})",
            mib_list(&update.peak),
            mib_list(&update.before)
        );
    }

    fn print_memory(&self) {
        let memory = &self.memory;
        println!(
            "controller peak RSS per replica: {}",
            mib_list(&memory.peak)
        );
        println!(
            "controller RSS per replica before the fan-out: {}; after: {}",
            mib_list(&memory.before),
            mib_list(&memory.after)
        );
        println!(
            "controller peak RSS growth over the fan-out per replica (peak - before): {}",
            mib_list(&growth(&memory.peak, &memory.before))
        );
        println!(
            "of the RSS after, file-backed (the binary's code and data, shared by replicas on a node): {}",
            mib_list(&memory.file_backed)
        );
    }
}

/// Each replica's `peak - before`, where both are known.
pub fn growth(peak: &[Option<f64>], before: &[Option<f64>]) -> Mibs {
    peak.iter()
        .zip(before)
        .map(|(peak, before)| Some((*peak)? - (*before)?))
        .collect()
}

fn mib_list(values: &[Option<f64>]) -> String {
    let values: Vec<String> = values
        .iter()
        .map(|mib| mib.map_or_else(|| "unknown".to_owned(), |m| format!("{m:.1} MiB")))
        .collect();
    values.join(", ")
}
