//! `onex dlq summary | list DLQ_TOPIC | replay DLQ_TOPIC`: inspect and replay dead letter
//! queues on any bus (DESIGN §3 rules 5, 6).

use std::io::{IsTerminal, Write};
use std::sync::Arc;

use onex_bus::dlq::BusDlqHandler;
use onex_bus::TransportBus;
use onex_core::dlq::{AlertStatus, DlqEntry, DlqFilter, DlqHandler, DlqSummary, ReprocessOptions, ReprocessReport, DEFAULT_REPLAY_CAP};
use onex_core::{Error, ErrorKind};
use uuid::Uuid;

/// What `onex dlq` does.
#[derive(Debug, Clone, PartialEq, clap::Subcommand)]
pub enum DlqCommand {
    /// Totals, oldest age, top failing topics and error kinds, and the alert status over
    /// every `*.dlq` topic.
    Summary,
    /// Records of one DLQ topic, oldest first.
    List {
        /// The DLQ topic, e.g. `orders.dlq`.
        dlq_topic: String,
        /// At most this many records.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Republishes records of a DLQ topic to their original topic (progress is committed:
    /// a second run does not replay the same records).
    Replay {
        /// The DLQ topic, e.g. `orders.dlq`.
        dlq_topic: String,
        /// Replay at most this many records.
        #[arg(long)]
        limit: Option<u64>,
        /// Records per second (default: as fast as the bus takes them).
        #[arg(long)]
        rate: Option<f64>,
        /// Report what would be replayed or quarantined; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Only records of this correlation id (a UUID).
        #[arg(long)]
        correlation_id: Option<String>,
        /// Only records that failed with this error kind (e.g. `timeout`, `rejected`).
        #[arg(long)]
        error_kind: Option<String>,
        /// Records already replayed this many times go to `{topic}.quarantine` instead.
        #[arg(long, default_value_t = DEFAULT_REPLAY_CAP)]
        replay_cap: u32,
    },
}

/// Runs a `dlq` subcommand against `bus`; prints JSON with `json`, text otherwise.
pub async fn run(bus: Arc<TransportBus>, cmd: DlqCommand, json: bool) -> Result<(), Error> {
    let handler = BusDlqHandler::new(bus);
    match cmd {
        DlqCommand::Summary => {
            let summary = handler.summary().await?;
            if json {
                print_json(&summary)
            } else {
                print!("{}", render_summary(&summary));
                Ok(())
            }
        }
        DlqCommand::List { dlq_topic, limit } => {
            let entries = handler.list(&dlq_topic, &DlqFilter::default(), limit).await?;
            if json {
                print_json(&entries)
            } else {
                print!("{}", render_list(&dlq_topic, &entries));
                Ok(())
            }
        }
        DlqCommand::Replay { dlq_topic, limit, rate, dry_run, correlation_id, error_kind, replay_cap } => {
            let filter = DlqFilter {
                correlation_id: correlation_id.as_deref().map(parse_correlation_id).transpose()?,
                error_kind: error_kind.as_deref().map(parse_error_kind).transpose()?,
                ..Default::default()
            };
            let opts = ReprocessOptions { limit, filter, rate_per_second: rate, dry_run, replay_cap };
            let show_progress = !json && std::io::stderr().is_terminal();
            let mut progress = |r: &ReprocessReport, left: u64| {
                if show_progress {
                    eprint!("\r{}", progress_line(r, left));
                    let _ = std::io::stderr().flush();
                }
            };
            let report = handler.reprocess_with_progress(&dlq_topic, opts, &mut progress).await;
            if show_progress {
                eprintln!();
            }
            let report = report?;
            if json {
                print_json(&report)
            } else {
                println!("{}", render_report(&dlq_topic, &report));
                Ok(())
            }
        }
    }
}

fn print_json<T: serde::Serialize>(value: &T) -> Result<(), Error> {
    let text = serde_json::to_string(value).map_err(|e| Error::protocol(format!("cannot render JSON output: {e}")))?;
    println!("{text}");
    Ok(())
}

/// Parses `--correlation-id`.
pub fn parse_correlation_id(s: &str) -> Result<Uuid, Error> {
    Uuid::parse_str(s.trim())
        .map_err(|e| Error::config(format!("--correlation-id {s:?} is not a UUID ({e}); copy it from `onex dlq list` (e.g. 0190c0de-...)")))
}

/// Parses `--error-kind`.
pub fn parse_error_kind(s: &str) -> Result<ErrorKind, Error> {
    ErrorKind::parse(s.trim()).ok_or_else(|| {
        let known: Vec<&str> = ErrorKind::ALL.iter().map(|k| k.as_str()).collect();
        Error::config(format!("--error-kind {s:?} is not an error kind; use one of: {}", known.join(", ")))
    })
}

/// One progress line of a replay.
pub fn progress_line(r: &ReprocessReport, left: u64) -> String {
    let verb = if r.dry_run { "would replay" } else { "replayed" };
    format!("{verb} {}, quarantined {}, skipped {}, scanned {} ({left} left)", r.replayed, r.quarantined, r.skipped, r.scanned)
}

/// The summary as text.
pub fn render_summary(s: &DlqSummary) -> String {
    let mut out = String::new();
    let status = match s.alert_status {
        AlertStatus::Ok => "OK",
        AlertStatus::Alert => "ALERT",
    };
    out.push_str(&format!("DLQ status: {status}   total records: {}\n", s.total));
    for reason in &s.alert_reasons {
        out.push_str(&format!("  ! {reason}\n"));
    }
    if let Some(age) = s.oldest_age_seconds {
        out.push_str(&format!("oldest record: {}\n", human_age(age)));
    }
    if !s.by_dlq_topic.is_empty() {
        out.push_str("DLQ topics:\n");
        for (topic, n) in &s.by_dlq_topic {
            out.push_str(&format!("  {n:>8}  {topic}\n"));
        }
    }
    for (title, counts) in [("top failing topics:", &s.top_topics), ("top error kinds:", &s.top_error_kinds)] {
        if !counts.is_empty() {
            out.push_str(title);
            out.push('\n');
            for c in counts {
                out.push_str(&format!("  {:>8}  {}\n", c.count, c.name));
            }
        }
    }
    out
}

fn human_age(secs: f64) -> String {
    match secs {
        s if s < 120.0 => format!("{s:.0} s"),
        s if s < 7200.0 => format!("{:.0} min", s / 60.0),
        s if s < 172_800.0 => format!("{:.1} h", s / 3600.0),
        s => format!("{:.1} days", s / 86_400.0),
    }
}

/// A listing as text: one line per record.
pub fn render_list(dlq_topic: &str, entries: &[DlqEntry]) -> String {
    if entries.is_empty() {
        return format!("{dlq_topic}: no DLQ records\n");
    }
    let mut out = String::new();
    for e in entries {
        let r = &e.record;
        out.push_str(&format!(
            "{}/{}  {}  {} {}/{}@{}  {}  attempts {}  corr {}  {}\n",
            e.partition,
            e.offset,
            e.dead_lettered_at.format("%Y-%m-%dT%H:%M:%SZ"),
            r.event_type.as_deref().unwrap_or("-"),
            r.topic,
            r.partition,
            r.offset,
            r.error_kind,
            r.attempts,
            r.correlation_id.map(|c| c.to_string()).unwrap_or_else(|| "-".into()),
            r.reason
        ));
    }
    out
}

/// A replay report as text.
pub fn render_report(dlq_topic: &str, r: &ReprocessReport) -> String {
    let head = if r.dry_run { format!("{dlq_topic} (dry run, nothing changed)") } else { dlq_topic.to_string() };
    format!(
        "{head}: scanned {}, matched {}, {} {}, quarantined {}, skipped {}",
        r.scanned,
        r.matched,
        if r.dry_run { "would replay" } else { "replayed" },
        r.replayed,
        r.quarantined,
        r.skipped
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct TestCli {
        #[command(subcommand)]
        cmd: DlqCommand,
    }

    #[test]
    fn parses_every_subcommand() {
        let c = TestCli::try_parse_from(["onex", "summary"]).unwrap();
        assert_eq!(c.cmd, DlqCommand::Summary);
        let c = TestCli::try_parse_from(["onex", "list", "orders.dlq", "--limit", "5"]).unwrap();
        assert_eq!(c.cmd, DlqCommand::List { dlq_topic: "orders.dlq".into(), limit: 5 });
        let c = TestCli::try_parse_from([
            "onex",
            "replay",
            "orders.dlq",
            "--limit",
            "3",
            "--rate",
            "10",
            "--dry-run",
            "--error-kind",
            "timeout",
            "--correlation-id",
            "x",
        ])
        .unwrap();
        assert_eq!(
            c.cmd,
            DlqCommand::Replay {
                dlq_topic: "orders.dlq".into(),
                limit: Some(3),
                rate: Some(10.0),
                dry_run: true,
                correlation_id: Some("x".into()),
                error_kind: Some("timeout".into()),
                replay_cap: DEFAULT_REPLAY_CAP,
            }
        );
        assert!(TestCli::try_parse_from(["onex", "list"]).is_err(), "list needs a DLQ topic");
    }

    #[test]
    fn bad_filter_values_say_what_to_use() {
        let err = parse_error_kind("boom").unwrap_err().to_string();
        assert!(err.contains("\"boom\"") && err.contains("timeout") && err.contains("rejected"), "{err}");
        assert_eq!(parse_error_kind("rate_limited").unwrap(), ErrorKind::RateLimited);
        let err = parse_correlation_id("not-a-uuid").unwrap_err().to_string();
        assert!(err.contains("not-a-uuid") && err.contains("UUID"), "{err}");
        let id = Uuid::now_v7();
        assert_eq!(parse_correlation_id(&id.to_string()).unwrap(), id);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runs_against_a_bus_and_refuses_bad_input() {
        let bus = onex_bus::connect("memory://").await.unwrap();
        run(bus.clone(), DlqCommand::Summary, true).await.unwrap();
        run(bus.clone(), DlqCommand::Summary, false).await.unwrap();
        let err = run(bus.clone(), DlqCommand::List { dlq_topic: "missing.dlq".into(), limit: 5 }, false).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        let replay = |rate: Option<f64>, kind: Option<&str>| DlqCommand::Replay {
            dlq_topic: "missing.dlq".into(),
            limit: None,
            rate,
            dry_run: false,
            correlation_id: None,
            error_kind: kind.map(str::to_string),
            replay_cap: DEFAULT_REPLAY_CAP,
        };
        assert_eq!(run(bus.clone(), replay(Some(-1.0), None), true).await.unwrap_err().kind(), ErrorKind::Config);
        assert_eq!(run(bus.clone(), replay(None, Some("nope")), true).await.unwrap_err().kind(), ErrorKind::Config);
        assert_eq!(run(bus, replay(None, None), true).await.unwrap_err().kind(), ErrorKind::NotFound);
    }

    #[test]
    fn renders_text() {
        let r = ReprocessReport { scanned: 4, matched: 3, replayed: 2, quarantined: 1, skipped: 1, dry_run: true };
        assert_eq!(
            render_report("o.dlq", &r),
            "o.dlq (dry run, nothing changed): scanned 4, matched 3, would replay 2, quarantined 1, skipped 1"
        );
        assert!(progress_line(&r, 7).contains("(7 left)"));
        assert_eq!(human_age(90_000.0), "25.0 h");
        assert_eq!(render_list("o.dlq", &[]), "o.dlq: no DLQ records\n");
    }
}
