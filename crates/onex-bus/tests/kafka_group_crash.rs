//! Two consumer processes in one group split the partitions; one is killed with SIGKILL
//! mid-stream. The group handles every event at least once, and the survivor resumes each
//! of the dead member's partitions exactly at the committed offset: duplicates come only
//! from offsets that were not committed.
//!
//! The member processes are this test binary itself, re-run with `ONEX_KAFKA_CHILD` set
//! (see [`kafka_group_member_child`]).
#![cfg(feature = "kafka")]

mod kafka_support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kafka_support::{new_topic, require_broker, transport, url};
use onex_bus::testing::unique_topic;
use onex_bus::transport::Transport;
use onex_bus::TransportBus;
use onex_core::{handler_fn, Delivery, Envelope, EventBus, Subscription};

const CHILD_ENV: &str = "ONEX_KAFKA_CHILD";
const EVENTS: u64 = 4000;

/// A group member process: handles records of `topic` in `group`, appending
/// `partition offset seq` per handled record to its file, until killed.
#[test]
fn kafka_group_member_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return; // only runs when spawned by the crash test
    };
    let parts: Vec<&str> = spec.split('|').collect();
    let (topic, group, out) = (parts[0].to_string(), parts[1].to_string(), PathBuf::from(parts[2]));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async move {
        let bus = onex_bus::connect(&url("")).await.expect("child connects");
        let file = std::sync::Arc::new(parking_lot::Mutex::new(std::fs::OpenOptions::new().create(true).append(true).open(&out).unwrap()));
        let handler = handler_fn(move |d: Delivery| {
            let file = file.clone();
            async move {
                let seq: u64 = d.envelope.payload_as()?;
                // One write(2) per line: it survives a SIGKILL right after the handler returns.
                file.lock().write_all(format!("{} {} {seq}\n", d.partition, d.offset).as_bytes()).unwrap();
                tokio::time::sleep(Duration::from_millis(2)).await;
                Ok(())
            }
        });
        bus.subscribe(Subscription::new(&topic, &group, handler)).await.unwrap();
        bus.start().await.unwrap();
        // Owned partitions and lag, for the parent's failure messages.
        let status = out.with_extension("status");
        loop {
            if let Ok(h) = bus.health_check().await {
                let _ = std::fs::write(&status, h.details["consumers"].to_string());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
}

struct Member(Child);

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_member(topic: &str, group: &str, out: &Path) -> Member {
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["kafka_group_member_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, format!("{topic}|{group}|{}", out.display()))
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn member process");
    Member(child)
}

/// (partition, offset, seq) lines of a member's file.
fn handled(path: &Path) -> Vec<(u32, u64, u64)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut it = l.split(' ').map(|x| x.parse::<u64>());
            match (it.next(), it.next(), it.next()) {
                (Some(Ok(p)), Some(Ok(o)), Some(Ok(s))) => Some((p as u32, o, s)),
                _ => None, // a line cut by the kill
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_of_one_member_loses_nothing_and_redelivers_only_uncommitted() {
    if require_broker().is_none() {
        return;
    }
    // One record per producer batch: tansu 0.6 cannot fetch from an offset inside a
    // multi-record batch, so a partition that moves with a committed offset mid-batch would
    // lose the rest of that batch on tansu (a broker bug, see the report; Kafka is fine).
    let t = transport("batch.num.messages=1").await;
    let topic = new_topic(&t, "kafka-crash", 4).await;
    let group = unique_topic("crash-group");
    let dir = tempfile::tempdir().unwrap();
    let (a_file, b_file) = (dir.path().join("a.log"), dir.path().join("b.log"));
    // B joins first and leads the group; A, the member that will be killed, joins second.
    let _b = spawn_member(&topic, &group, &b_file);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut a = spawn_member(&topic, &group, &a_file);
    tokio::time::sleep(Duration::from_secs(10)).await; // both join and the group settles

    let bus = TransportBus::new(t.clone());
    let publisher = {
        let (bus, topic) = (std::sync::Arc::new(bus), topic.clone());
        tokio::spawn(async move {
            for batch in 0..(EVENTS / 100) {
                let sends = (batch * 100..(batch + 1) * 100).map(|seq| {
                    let env = Envelope::new("crash.tick.v1", &seq).unwrap().with_partition_key(format!("k{}", seq % 40));
                    let (bus, topic) = (bus.clone(), topic.clone());
                    async move { bus.publish_envelope(&env, &topic).await }
                });
                for r in futures::future::join_all(sends).await {
                    r.expect("publish");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    // Kill A mid-stream, once both members are working.
    let deadline = Instant::now() + Duration::from_secs(90);
    while handled(&a_file).len() < 300 || handled(&b_file).is_empty() {
        assert!(
            Instant::now() < deadline,
            "members did not both start handling (a {}, b {})",
            handled(&a_file).len(),
            handled(&b_file).len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.0.kill().expect("SIGKILL member A");
    a.0.wait().unwrap();
    let b_before_kill = handled(&b_file).len();
    // A can commit no more; read what it committed before B takes over (session timeout 6 s).
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let a_lines = handled(&a_file);
    let a_parts: BTreeSet<u32> = a_lines.iter().map(|l| l.0).collect();
    let mut committed = BTreeMap::new();
    for p in &a_parts {
        committed.insert(*p, t.committed(&group, &topic, *p).await.unwrap().unwrap_or(0));
    }
    let b_pre: BTreeSet<u32> = handled(&b_file)[..b_before_kill].iter().map(|l| l.0).collect();
    assert!(a_parts.is_disjoint(&b_pre), "members shared partitions before the kill: {a_parts:?} / {b_pre:?}");
    // A supervisor restarts the killed process. On Kafka the survivor alone would take the
    // dead member's partitions after session.timeout.ms; tansu 0.6 never evicts a member
    // whose session expired, so only the restart's join makes partitions move at all.
    let c_file = dir.path().join("c.log");
    let _c = spawn_member(&topic, &group, &c_file);

    publisher.await.unwrap();
    let all = |a: &Path, b: &Path, c: &Path| -> BTreeSet<u64> {
        handled(a).iter().chain(handled(b).iter()).chain(handled(c).iter()).map(|l| l.2).collect()
    };
    // Wait until every event is handled, or nothing moved for 30 s.
    let (mut last_count, mut last_change) = (0, Instant::now());
    loop {
        let n = all(&a_file, &b_file, &c_file).len();
        if n as u64 == EVENTS || last_change.elapsed() > Duration::from_secs(30) {
            break;
        }
        if n != last_count {
            (last_count, last_change) = (n, Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let (b_lines, c_lines) = (handled(&b_file), handled(&c_file));
    // Partitions a live member owns at the end (from the members' own status files). tansu 0.6
    // keeps the killed member in the group, so the rebalance that C's join starts can hand the
    // dead member any partition — also one that B owned before the kill.
    let owned_by = |f: &Path| -> BTreeSet<u32> {
        let status: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(f.with_extension("status")).unwrap_or_default()).unwrap_or_default();
        status
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|c| c["partitions"].as_array().cloned().unwrap_or_default())
            .filter_map(|p| p["partition"].as_u64())
            .map(|p| p as u32)
            .collect()
    };
    let live: BTreeSet<u32> = owned_by(&b_file).union(&owned_by(&c_file)).copied().collect();
    let broker_end: BTreeMap<u32, u64> =
        t.admin().describe_topic(&topic).await.unwrap().partitions.iter().map(|p| (p.partition, p.high_watermark)).collect();
    let after_kill: Vec<(u32, u64, u64)> = b_lines[b_before_kill..].iter().chain(c_lines.iter()).copied().collect();
    let high: BTreeMap<u32, u64> =
        (0..4).map(|p| (p, after_kill.iter().chain(a_lines.iter()).filter(|l| l.0 == p).map(|l| l.1 + 1).max().unwrap_or(0))).collect();
    let mut duplicates = 0;
    let (mut taken_over, stuck): (Vec<u32>, Vec<u32>) = (Vec::new(), (0..4).filter(|p| !live.contains(p)).collect());
    for p in a_parts.iter().filter(|p| live.contains(p)) {
        let c = committed[p];
        let a_last = a_lines.iter().filter(|l| l.0 == *p).map(|l| l.1).max().unwrap();
        assert!(
            c <= a_last + 1,
            "partition {p}: committed {c} beyond what A handled ({a_last}): an offset was committed before its handler ran"
        );
        let new_offsets: Vec<u64> = after_kill.iter().filter(|l| l.0 == *p).map(|l| l.1).collect();
        let resumed_at =
            new_offsets.iter().min().copied().unwrap_or_else(|| panic!("partition {p} is owned by a live member that handled none of it"));
        taken_over.push(*p);
        assert_eq!(resumed_at, c, "partition {p}: the new owner resumes exactly at the committed offset");
        let a_offsets: BTreeSet<u64> = a_lines.iter().filter(|l| l.0 == *p).map(|l| l.1).collect();
        for o in &new_offsets {
            if a_offsets.contains(o) {
                assert!(*o >= c, "partition {p}: offset {o} was committed ({c}) and still redelivered");
                duplicates += 1;
            }
        }
    }
    let committed_total: u64 = committed.values().sum();
    assert!(committed_total > 0, "A committed progress before it died");
    // At least once: every record of a partition that a live member owns was handled, up to
    // the broker's end of the partition.
    let seen = all(&a_file, &b_file, &c_file);
    let lines: Vec<(u32, u64, u64)> = a_lines.iter().chain(b_lines.iter()).chain(c_lines.iter()).copied().collect();
    for p in live.iter().copied() {
        let offsets: BTreeSet<u64> = lines.iter().filter(|l| l.0 == p).map(|l| l.1).collect();
        let missing: Vec<u64> = (0..broker_end[&p]).filter(|o| !offsets.contains(o)).collect();
        let who =
            |v: &[(u32, u64, u64)]| v.iter().filter(|l| l.0 == p).map(|l| l.1).fold((u64::MAX, 0), |(lo, hi), o| (lo.min(o), hi.max(o)));
        assert!(
            missing.is_empty(),
            "partition {p}: offsets {:?}.. ({} of them) never handled (lost); A {:?} B-before {:?} B-after {:?} C {:?}, committed {committed:?}",
            &missing[..missing.len().min(5)],
            missing.len(),
            who(&a_lines),
            who(&b_lines[..b_before_kill]),
            who(&b_lines[b_before_kill..]),
            who(&c_lines)
        );
    }
    eprintln!(
        "crash test: A handled {} on {a_parts:?} (committed {committed:?}); after the kill B handled {}, the restart C {}; \
         taken over {taken_over:?} with {duplicates} duplicates, all from uncommitted offsets; {} of {EVENTS} events handled",
        a_lines.len(),
        b_lines.len() - b_before_kill,
        c_lines.len(),
        seen.len()
    );
    if !stuck.is_empty() {
        let msg = format!(
            "partitions {stuck:?} are owned by the killed member: the broker never evicted it after session.timeout.ms (tansu 0.6 does not), so the rebalance on C's join can give it partitions"
        );
        assert!(std::env::var_os("ONEX_KAFKA_REQUIRE_EVICTION").is_none(), "{msg}");
        // Written past the test harness's capture, so the limitation is visible in a normal run.
        let note = format!("\n!!!!! KNOWN BROKER LIMITATION: {msg}; takeover verified only for {taken_over:?} !!!!!\n");
        let _ = std::io::Write::write_all(&mut std::io::stderr(), note.as_bytes());
    } else if seen.len() as u64 != EVENTS {
        // Say where each partition stopped, against the broker's end, and what the members
        // reported about themselves (owned partitions, lag).
        let info = t.admin().describe_topic(&topic).await.map(|i| format!("{:?}", i.partitions)).unwrap_or_else(|e| e.to_string());
        let status = |f: &Path| std::fs::read_to_string(f.with_extension("status")).unwrap_or_default();
        panic!(
            "every event handled at least once: {} of {EVENTS}; highest handled offset + 1 per partition {high:?}; broker {info}; B {}; C {}",
            seen.len(),
            status(&b_file),
            status(&c_file)
        );
    }
}
