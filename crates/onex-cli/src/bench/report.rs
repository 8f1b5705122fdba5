//! What every benchmark scenario prints (DESIGN §8).

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// The CPU time spent between [`CpuClock::start`] and [`CpuClock::spent`]: by the whole bench
/// process, over all its threads (a client library's own threads included), read from
/// `CLOCK_PROCESS_CPUTIME_ID`; or, from [`CpuClock::start_thread`], by the calling thread
/// alone (`CLOCK_THREAD_CPUTIME_ID`). A side's CPU per record is steadier than its throughput
/// on a small shared machine, and on one whose cores are all busy it is what decides the
/// throughput. The sending thread's share is the caller's and the library's own work, apart
/// from what the client library's threads do. `None` where the clock is not read (not
/// Linux).
#[derive(Debug, Clone, Copy)]
pub struct CpuClock {
    of_thread: bool,
    started: Option<Duration>,
}

impl CpuClock {
    /// Starts counting the process's CPU time.
    pub fn start() -> Self {
        CpuClock { of_thread: false, started: cpu_time(false) }
    }

    /// Starts counting the calling thread's CPU time; read it back on the same thread.
    pub fn start_thread() -> Self {
        CpuClock { of_thread: true, started: cpu_time(true) }
    }

    /// The CPU time spent since the start.
    pub fn spent(&self) -> Option<Duration> {
        Some(cpu_time(self.of_thread)?.saturating_sub(self.started?))
    }
}

#[cfg(target_os = "linux")]
fn cpu_time(of_thread: bool) -> Option<Duration> {
    use rustix::time::ClockId;
    let t = rustix::time::clock_gettime(if of_thread { ClockId::ThreadCPUTime } else { ClockId::ProcessCPUTime });
    Some(Duration::new(u64::try_from(t.tv_sec).ok()?, u32::try_from(t.tv_nsec).ok()?))
}

#[cfg(not(target_os = "linux"))]
fn cpu_time(_of_thread: bool) -> Option<Duration> {
    None
}

/// Latencies of one side of a scenario, in microseconds.
#[derive(Debug)]
pub struct Latencies(Histogram<u64>);

impl Default for Latencies {
    fn default() -> Self {
        Latencies(Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds"))
    }
}

impl Latencies {
    /// Records one latency.
    pub fn record(&mut self, d: Duration) {
        let us = (d.as_micros() as u64).clamp(1, 600_000_000);
        let _ = self.0.record(us);
    }

    /// Records the latency since `t0`, when the record was timed.
    pub fn sampled(&mut self, t0: Option<std::time::Instant>) {
        if let Some(t0) = t0 {
            self.record(t0.elapsed());
        }
    }

    /// Latencies recorded.
    #[cfg(test)]
    pub(crate) fn count(&self) -> u64 {
        self.0.len()
    }

    /// Merges another recorder.
    pub fn merge(&mut self, other: &Latencies) {
        let _ = self.0.add(&other.0);
    }

    fn quantile_ms(&self, q: f64) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        self.0.value_at_quantile(q) as f64 / 1000.0
    }
}

/// One side (ours or the baseline) of a scenario.
#[derive(Debug, Clone, Serialize)]
pub struct Side {
    /// What was measured.
    pub what: String,
    /// Operations completed.
    pub count: u64,
    /// Wall time in seconds.
    pub elapsed_s: f64,
    /// Operations per second.
    pub throughput: f64,
    /// `msg/s` or `req/s`.
    pub unit: &'static str,
    /// Median latency in ms.
    pub p50_ms: f64,
    /// 99th percentile latency in ms.
    pub p99_ms: f64,
}

impl Side {
    /// A side from a count, the elapsed time and its latencies.
    pub fn new(what: impl Into<String>, count: u64, elapsed: Duration, unit: &'static str, lat: &Latencies) -> Self {
        let secs = elapsed.as_secs_f64().max(1e-9);
        Side {
            what: what.into(),
            count,
            elapsed_s: secs,
            throughput: count as f64 / secs,
            unit,
            p50_ms: lat.quantile_ms(0.5),
            p99_ms: lat.quantile_ms(0.99),
        }
    }
}

/// One scenario: ours against the raw baseline measured in the same run.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioReport {
    /// Scenario name (`bus-memory`, `bus-sqlite/pipelined`, `http/c64`, …).
    pub scenario: String,
    /// Our path.
    pub ours: Side,
    /// The raw baseline.
    pub baseline: Side,
    /// ours.throughput / baseline.throughput.
    pub ratio: f64,
    /// The ratio the issue asks for; `None` for a diagnostic, a scenario that shows where a
    /// cost lies rather than measuring what an issue asks for.
    pub target: Option<f64>,
    /// Free-form facts (payload size, partitions, concurrency).
    pub params: serde_json::Value,
}

impl ScenarioReport {
    /// Builds a report, computing the ratio.
    pub fn new(scenario: impl Into<String>, ours: Side, baseline: Side, target: f64, params: serde_json::Value) -> Self {
        let ratio = if baseline.throughput > 0.0 { ours.throughput / baseline.throughput } else { 0.0 };
        ScenarioReport { scenario: scenario.into(), ours, baseline, ratio, target: Some(target), params }
    }

    /// A diagnostic: a report like [`Self::new`]'s, with no target to meet.
    pub fn diagnostic(scenario: impl Into<String>, ours: Side, baseline: Side, params: serde_json::Value) -> Self {
        ScenarioReport { target: None, ..Self::new(scenario, ours, baseline, 0.0, params) }
    }

    /// The ratio against the target, as the readable report words it.
    fn verdict(&self) -> String {
        match self.target {
            Some(target) if self.ratio >= target => format!("target {target:.2}: meets"),
            Some(target) => format!("target {target:.2}: BELOW"),
            None => "a diagnostic, no target".to_string(),
        }
    }

    /// Prints the report: one JSON object per line with `json`, a readable block otherwise.
    pub fn print(&self, json: bool) {
        if json {
            println!("{}", serde_json::to_string(self).expect("report serializes"));
        } else {
            println!("{}  ({})", self.scenario, self.params);
            for (name, s) in [("ours", &self.ours), ("baseline", &self.baseline)] {
                println!(
                    "  {name:<9} {:>12.0} {}  p50 {:>8.3} ms  p99 {:>8.3} ms  ({} in {:.2} s: {})",
                    s.throughput, s.unit, s.p50_ms, s.p99_ms, s.count, s.elapsed_s, s.what
                );
            }
            println!("  ratio     {:.3} ({})", self.ratio, self.verdict());
        }
    }
}

/// One measurement of a scenario over repeated runs (`onex bench --repeat N`): its ratio in
/// each run. A target is judged by their median, since one run's ratio moves with whatever
/// else the machine does (docs/decisions.md, "Thirty-third session").
#[derive(Debug, Clone)]
pub struct RepeatedRuns {
    /// The measurement's name, as its reports give it.
    pub scenario: String,
    /// Its ratio in each run, in the order run.
    pub ratios: Vec<f64>,
    /// Its target, as its reports give it.
    pub target: Option<f64>,
}

impl RepeatedRuns {
    /// The runs so far: `report`'s.
    pub fn first(report: &ScenarioReport) -> Self {
        RepeatedRuns { scenario: report.scenario.clone(), ratios: vec![report.ratio], target: report.target }
    }

    /// Adds the next run's report of the same measurement.
    pub fn add(&mut self, report: &ScenarioReport) {
        self.ratios.push(report.ratio);
    }

    /// The median ratio (of the middle two, for an even number of runs).
    pub fn median(&self) -> f64 {
        let mut sorted = self.ratios.clone();
        sorted.sort_by(f64::total_cmp);
        match sorted.len() {
            0 => 0.0,
            n if n % 2 == 1 => sorted[n / 2],
            n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
        }
    }

    /// Runs whose ratio met the target.
    fn meeting(&self) -> usize {
        self.target.map_or(0, |target| self.ratios.iter().filter(|r| **r >= target).count())
    }

    /// The median against the target, as the readable report words it.
    fn verdict(&self) -> String {
        let runs = self.ratios.len();
        match self.target {
            Some(target) => {
                let word = if self.median() >= target { "meets" } else { "BELOW" };
                format!("target {target:.2}: {word}, {} of {runs} runs at or above it", self.meeting())
            }
            None => "a diagnostic, no target".to_string(),
        }
    }

    /// Prints the summary: one JSON object with `json` (`"summary"` names the measurement,
    /// where a run's report says `"scenario"`), a readable line otherwise.
    pub fn print(&self, json: bool) {
        let (min, max) = self.ratios.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
        if json {
            let summary = serde_json::json!({
                "summary": self.scenario, "runs": self.ratios.len(), "ratios": self.ratios, "median_ratio": self.median(),
                "min_ratio": min, "max_ratio": max, "target": self.target,
                "runs_meeting_target": self.target.map(|_| self.meeting()),
            });
            println!("{summary}");
        } else {
            println!(
                "{}  median ratio {:.3} over {} runs ({min:.3}–{max:.3}); {}",
                self.scenario,
                self.median(),
                self.ratios.len(),
                self.verdict()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{CpuClock, Latencies, RepeatedRuns, ScenarioReport, Side};

    #[test]
    fn repeated_runs_are_judged_by_their_median() {
        let side = |n| Side::new("x", n, Duration::from_secs(1), "msg/s", &Latencies::default());
        let report = |ours, target| ScenarioReport::new("s", side(ours), side(100), target, serde_json::Value::Null);
        let mut runs = RepeatedRuns::first(&report(80, 0.9));
        for ours in [100, 95] {
            runs.add(&report(ours, 0.9));
        }
        assert_eq!((runs.median(), runs.meeting()), (0.95, 2));
        assert_eq!(runs.verdict(), "target 0.90: meets, 2 of 3 runs at or above it");
        runs.add(&report(70, 0.9));
        assert_eq!(runs.median(), (0.8 + 0.95) / 2.0, "an even count takes the middle two");
        assert_eq!(runs.verdict(), "target 0.90: BELOW, 2 of 4 runs at or above it");
        let diagnostic = RepeatedRuns::first(&ScenarioReport::diagnostic("d", side(50), side(100), serde_json::Value::Null));
        assert_eq!((diagnostic.median(), diagnostic.verdict().as_str()), (0.5, "a diagnostic, no target"));
    }

    #[test]
    fn a_report_meets_its_target_or_is_below_it_and_a_diagnostic_has_none() {
        let side = |n| Side::new("x", n, Duration::from_secs(1), "msg/s", &Latencies::default());
        let report = |ours, target| ScenarioReport::new("s", side(ours), side(100), target, serde_json::Value::Null);
        assert_eq!(report(90, 0.9).verdict(), "target 0.90: meets");
        assert_eq!(report(89, 0.9).verdict(), "target 0.90: BELOW");
        let diagnostic = ScenarioReport::diagnostic("d", side(50), side(100), serde_json::Value::Null);
        assert_eq!((diagnostic.ratio, diagnostic.verdict().as_str()), (0.5, "a diagnostic, no target"));
        let json = serde_json::to_value(&diagnostic).unwrap();
        assert_eq!((json["target"].clone(), json["ratio"].clone()), (serde_json::Value::Null, serde_json::json!(0.5)));
        assert_eq!(serde_json::to_value(report(90, 0.9)).unwrap()["target"], serde_json::json!(0.9));
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn the_cpu_clock_counts_work() {
        // Spins until the clock has counted 20 ms: a clock that does not count fails here.
        // (Other tests of this process may add to it; none can take away.)
        let clock = CpuClock::start();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let mut x = 0u64;
        while clock.spent().expect("read on Linux") < std::time::Duration::from_millis(20) {
            for _ in 0..10_000 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
            assert!(std::time::Instant::now() < deadline, "20 s of spinning counted as {:?}", clock.spent());
        }
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn a_thread_clock_counts_its_own_thread_only() {
        let spin = |clock: CpuClock, until: Duration| {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            let mut x = 0u64;
            while clock.spent().expect("read on Linux") < until {
                for _ in 0..10_000 {
                    x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                }
                assert!(std::time::Instant::now() < deadline, "20 s of spinning counted as {:?}", clock.spent());
            }
        };
        let mine = CpuClock::start_thread();
        // Another thread spins 200 ms of its own CPU while this one only waits for it.
        std::thread::spawn(move || spin(CpuClock::start_thread(), Duration::from_millis(200))).join().unwrap();
        let waited = mine.spent().expect("read on Linux");
        assert!(waited < Duration::from_millis(100), "this thread only waited, yet its clock counted {waited:?}");
        spin(mine, Duration::from_millis(220));
    }
}
