//! Crash tests of the sqlite transport with REAL processes killed by SIGKILL.
//!
//! The child processes are this test binary re-invoked on `child_process_entry` with
//! `ONEX_SQLITE_CHILD=<mode>`; they print one line per acknowledged publish or handled event
//! and the parent kills them with `kill -9`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use onex_bus::sqlite::SqliteTransport;
use onex_bus::transport::{PollEvent, ProduceRecord, Transport};
use onex_core::envelope::{decode_record, encode_record};
use onex_core::{handler_fn, Delivery, Envelope, EventBus, StartFrom, Subscription, TopicSpec};

const CHILD_ENV: &str = "ONEX_SQLITE_CHILD";
const URL_ENV: &str = "ONEX_SQLITE_URL";
const TOPIC_ENV: &str = "ONEX_SQLITE_TOPIC";

// ---------------------------------------------------------------- child side

/// Not a test on its own: the entry point of the child processes. Without the environment
/// variable it returns at once.
#[test]
fn child_process_entry() {
    let Ok(mode) = std::env::var(CHILD_ENV) else { return };
    let url = std::env::var(URL_ENV).unwrap_or_default();
    let topic = std::env::var(TOPIC_ENV).unwrap_or_default();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async move {
        match mode.as_str() {
            "publisher" => child_publisher(&url, &topic).await,
            "consumer" => child_consumer(&url, &topic, Duration::ZERO).await,
            // Sleeps 1 ms every 20 records: a release build would otherwise finish 100,000
            // records before the parent can kill it mid-way.
            "throttled-consumer" => child_consumer(&url, &topic, Duration::from_micros(10)).await,
            "slow-consumer" => child_consumer(&url, &topic, Duration::from_millis(2)).await,
            "writer" => child_writer(&url, &topic).await,
            "open-default" => {
                let bus = onex_bus::connect(onex_core::DEFAULT_BUS_URL).await.expect("default bus opens");
                say(&format!("OPENED {}", bus.backend()));
            }
            other => panic!("unknown child mode {other}"),
        }
    });
    std::process::exit(0);
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").unwrap();
    out.flush().unwrap();
}

/// 8 tasks, one key each, publishing in sequence forever; one ACK line per receipt.
async fn child_publisher(url: &str, topic: &str) {
    let bus = onex_bus::connect(url).await.expect("connect");
    let tasks: Vec<_> = (0..8)
        .map(|k| {
            let (bus, topic) = (bus.clone(), topic.to_string());
            tokio::spawn(async move {
                for seq in 0u64.. {
                    let env = Envelope::new("crash.pub.v1", &serde_json::json!({"key": k, "seq": seq}))
                        .unwrap()
                        .with_partition_key(format!("key-{k}"));
                    let r = bus.publish_envelope(&env, &topic).await.expect("publish");
                    say(&format!("ACK {k} {seq} {} {}", r.partition, r.offset));
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

/// Subscribes and prints `H partition offset` per handled event, forever.
async fn child_consumer(url: &str, topic: &str, pause: Duration) {
    let bus = onex_bus::connect(url).await.expect("connect");
    let handler = handler_fn(move |d: Delivery| async move {
        if pause >= Duration::from_millis(1) {
            tokio::time::sleep(pause).await;
        } else if !pause.is_zero() && d.offset % 20 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        say(&format!("H {} {}", d.partition, d.offset));
        Ok(())
    });
    bus.subscribe(Subscription::new(topic, "crash-group", handler)).await.expect("subscribe");
    bus.start_consuming(None).await.expect("consume");
}

/// Publishes 3,000 events over about 3 s, then prints DONE and exits.
async fn child_writer(url: &str, topic: &str) {
    let bus = onex_bus::connect(url).await.expect("connect");
    for i in 0..3000u64 {
        let env = Envelope::new("crash.tail.v1", &serde_json::json!({"n": i})).unwrap().with_partition_key(format!("k{}", i % 16));
        let r = bus.publish_envelope(&env, topic).await.expect("publish");
        say(&format!("ACK {} {}", r.partition, r.offset));
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    bus.transport().close().await.expect("close");
    say("DONE");
}

// ---------------------------------------------------------------- parent side

struct ChildProc {
    child: Child,
    lines: mpsc::Receiver<String>,
}

fn spawn_child(mode: &str, url: &str, topic: &str) -> ChildProc {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["child_process_entry", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, mode)
        .env(URL_ENV, url)
        .env(TOPIC_ENV, topic)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child");
    let out = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            // libtest starts the child's first line with "test child_process_entry ... ".
            let line = match line.find("... ") {
                Some(at) => line[at + 4..].to_string(),
                None => line,
            };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    ChildProc { child, lines }
}

impl ChildProc {
    /// Next line starting with `prefix` (others are test-harness chatter), within `wait`.
    fn next(&self, prefix: &str, wait: Duration) -> Option<String> {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.lines.recv_timeout(left) {
                Ok(l) if l.starts_with(prefix) => return Some(l),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }

    /// SIGKILL, then every line the child wrote before it died.
    fn kill9(mut self, prefix: &str) -> Vec<String> {
        let status = Command::new("kill").args(["-9", &self.child.id().to_string()]).status().expect("run kill");
        assert!(status.success(), "kill -9 failed");
        let exit = self.child.wait().unwrap();
        assert!(!exit.success(), "child was killed, not exited: {exit:?}");
        self.lines.iter().filter(|l| l.starts_with(prefix)).collect()
    }
}

fn nums(line: &str) -> Vec<u64> {
    line.split_whitespace().skip(1).map(|w| w.parse().unwrap()).collect()
}

async fn setup(dir: &tempfile::TempDir, query: &str, topic: &str, partitions: u32) -> (String, Arc<SqliteTransport>) {
    let url = format!("sqlite://{}/bus.db{query}", dir.path().display());
    let t = SqliteTransport::from_url(&url::Url::parse(&url).unwrap()).await.unwrap();
    t.admin().create_topic(TopicSpec::new(topic, partitions)).await.unwrap();
    (url, t)
}

/// Reads every record of `topic` with a throwaway group: (partition, offset) → envelope.
async fn read_all(t: &SqliteTransport, topic: &str) -> BTreeMap<(u32, u64), Envelope> {
    let info = t.admin().describe_topic(topic).await.unwrap();
    let total: u64 = info.partitions.iter().map(|p| p.high_watermark).sum();
    let mut c = t.consumer(&format!("verify-{}", uuid::Uuid::new_v4().simple()), topic, StartFrom::Earliest).await.unwrap();
    let mut out = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while (out.len() as u64) < total {
        assert!(Instant::now() < deadline, "read {} of {total}", out.len());
        if let PollEvent::Records(rs) = c.poll(1000, Duration::from_millis(200)).await.unwrap() {
            for r in rs {
                out.insert((r.partition, r.offset), decode_record(&r.record, topic).unwrap());
            }
        }
    }
    c.close().await.unwrap();
    out
}

/// 1. A publisher killed after K acknowledged events: after reopening, all K are there, at
/// the offsets their receipts named, in order per key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_publisher_loses_no_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let (url, t) = setup(&dir, "", "crash-pub", 4).await;
    t.close().await.unwrap();
    let child = spawn_child("publisher", &url, "crash-pub");
    for i in 0..2000 {
        child.next("ACK", Duration::from_secs(60)).unwrap_or_else(|| panic!("only {i} acks before the timeout"));
    }
    let acks = child.kill9("ACK");
    let k = 2000 + acks.len();
    let t = SqliteTransport::from_url(&url::Url::parse(&url).unwrap()).await.unwrap();
    let stored = read_all(&t, "crash-pub").await;
    assert!(stored.len() >= k, "{} stored < {k} acknowledged", stored.len());
    // Every acknowledged event is where its receipt said. (The first 2000 lines were
    // consumed by `next`; the kill drained the rest: check those, and all stored.)
    for line in &acks {
        let v = nums(line);
        let env = stored.get(&(v[2] as u32, v[3])).unwrap_or_else(|| panic!("acknowledged {line} is missing"));
        let p = env.payload_json().unwrap();
        assert_eq!((p["key"].as_u64(), p["seq"].as_u64()), (Some(v[0]), Some(v[1])), "{line}");
    }
    let mut per_key: HashMap<u64, Vec<u64>> = HashMap::new();
    for env in stored.values() {
        let p = env.payload_json().unwrap();
        per_key.entry(p["key"].as_u64().unwrap()).or_default().push(p["seq"].as_u64().unwrap());
    }
    let mut total = 0;
    for (key, seqs) in per_key {
        let want: Vec<u64> = (0..seqs.len() as u64).collect();
        assert_eq!(seqs, want, "key {key}: sequence numbers in offset order, none missing");
        total += seqs.len();
    }
    assert!(total >= k);
    t.close().await.unwrap();
}

/// 2. A consumer killed in the middle of 100,000 events and restarted: every event handled
/// at least once; the only duplicates are at or after the committed offsets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_consumer_resumes_from_committed_offsets() {
    const N: u64 = 100_000;
    let dir = tempfile::tempdir().unwrap();
    let (url, t) = setup(&dir, "?lease_ttl_ms=2000", "crash-consume", 4).await;
    let batch: Vec<ProduceRecord> = (0..N)
        .map(|i| ProduceRecord::new(encode_record(&Envelope::new("crash.consume.v1", &i).unwrap().with_partition_key(format!("k{i}")))))
        .collect();
    for chunk in batch.chunks(5000) {
        t.produce("crash-consume", chunk.to_vec()).await.unwrap();
    }
    t.close().await.unwrap();

    let first = spawn_child("throttled-consumer", &url, "crash-consume");
    let mut handled_first: BTreeSet<(u32, u64)> = BTreeSet::new();
    let parse = |l: &str| {
        let v = nums(l);
        (v[0] as u32, v[1])
    };
    for i in 0..30_000 {
        let line = first.next("H", Duration::from_secs(120)).unwrap_or_else(|| panic!("only {i} handled before the timeout"));
        handled_first.insert(parse(&line));
    }
    // Let at least one commit interval pass after the 30,000th record.
    tokio::time::sleep(Duration::from_millis(150)).await;
    // What it printed between our last read and its death.
    handled_first.extend(first.kill9("H").iter().map(|l| parse(l)));
    let t = SqliteTransport::from_url(&url::Url::parse(&url).unwrap()).await.unwrap();
    let mut committed = [0u64; 4];
    for (p, c) in committed.iter_mut().enumerate() {
        *c = t.committed("crash-group", "crash-consume", p as u32).await.unwrap().unwrap_or(0);
    }
    let committed_total: u64 = committed.iter().sum();
    assert!(committed_total > 0 && committed_total < N, "killed mid-way: committed {committed:?}");
    for (p, c) in committed.iter().enumerate() {
        for o in 0..*c {
            assert!(
                handled_first.contains(&(p as u32, o)),
                "offset {o} of partition {p} committed but never handled; committed {committed:?}; handled per partition {:?}",
                (0..4u32)
                    .map(|q| (
                        handled_first.iter().filter(|(pp, _)| *pp == q).count(),
                        handled_first.iter().filter(|(pp, _)| *pp == q).map(|(_, o)| *o).min()
                    ))
                    .collect::<Vec<_>>()
            );
        }
    }

    let second = spawn_child("consumer", &url, "crash-consume");
    let mut handled_second: BTreeSet<(u32, u64)> = BTreeSet::new();
    let mut duplicates_in_second = 0;
    let need = N - committed_total;
    while (handled_second.len() as u64) < need {
        let line = second
            .next("H", Duration::from_secs(120))
            .unwrap_or_else(|| panic!("restarted consumer handled only {}", handled_second.len()));
        let v = nums(&line);
        let (p, o) = (v[0] as u32, v[1]);
        assert!(o >= committed[p as usize], "restarted consumer re-handled committed event {p}/{o} (committed {committed:?})");
        if !handled_second.insert((p, o)) {
            duplicates_in_second += 1;
        }
    }
    second.kill9("H");
    // Every event not committed by the first run was handled by the second: with the
    // first run's committed prefix, that is all N, at least once each.
    let info = t.admin().describe_topic("crash-consume").await.unwrap();
    for p in info.partitions {
        for o in committed[p.partition as usize]..p.high_watermark {
            assert!(handled_second.contains(&(p.partition, o)), "event {}/{o} never handled after the restart", p.partition);
        }
    }
    assert_eq!(duplicates_in_second, 0, "no duplicates within the second run");
    // Duplicates across the crash: handled before the kill but not yet committed.
    let redelivered = handled_first.intersection(&handled_second).count();
    eprintln!(
        "committed at the kill: {committed:?}; handled before the kill: {}; redelivered after restart: {redelivered}",
        handled_first.len()
    );
    t.close().await.unwrap();
}

/// 3. Two consumer processes split the partitions; one is killed; the other takes its
/// partitions over after the lease TTL and the group handles every event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn surviving_member_takes_over_after_lease_ttl() {
    const N: u64 = 4000;
    let dir = tempfile::tempdir().unwrap();
    let (url, t) = setup(&dir, "?lease_ttl_ms=2000", "crash-split", 4).await;
    let batch: Vec<ProduceRecord> = (0..N)
        .map(|i| ProduceRecord::new(encode_record(&Envelope::new("crash.split.v1", &i).unwrap().with_partition_key(format!("k{i}")))))
        .collect();
    t.produce("crash-split", batch).await.unwrap();

    let a = spawn_child("slow-consumer", &url, "crash-split");
    let first_a = nums(&a.next("H", Duration::from_secs(30)).expect("first member handles"));
    let b = spawn_child("slow-consumer", &url, "crash-split");
    let mut handled: BTreeSet<(u32, u64)> = BTreeSet::from([(first_a[0] as u32, first_a[1])]);
    // Kill the first member once the second handles its whole share (2 of 4 partitions).
    let mut b_partitions_before = BTreeSet::new();
    while b_partitions_before.len() < 2 {
        let v = nums(&b.next("H", Duration::from_secs(30)).expect("second member gets partitions"));
        b_partitions_before.insert(v[0] as u32);
        handled.insert((v[0] as u32, v[1]));
    }
    let killed_at = Instant::now();
    for l in a.kill9("H") {
        let v = nums(&l);
        handled.insert((v[0] as u32, v[1]));
    }
    let mut b_partitions_after_kill = BTreeSet::new();
    let mut takeover_after = None;
    while (handled.len() as u64) < N {
        let line = b.next("H", Duration::from_secs(60)).unwrap_or_else(|| panic!("group handled only {} of {N}", handled.len()));
        let v = nums(&line);
        let p = v[0] as u32;
        if !b_partitions_before.contains(&p) && takeover_after.is_none() {
            takeover_after = Some(killed_at.elapsed());
        }
        b_partitions_after_kill.insert(p);
        handled.insert((p, v[1]));
    }
    b.kill9("H");
    assert_eq!(handled.len() as u64, N, "every event handled by the group");
    assert_eq!(b_partitions_after_kill.len(), 4, "the survivor ends up with every partition");
    let took = takeover_after.expect("the survivor took over partitions of the killed member");
    // The killed member renewed its leases at most ttl/3 before dying: they expire no
    // sooner than 2/3 of the 2 s TTL after the kill.
    assert!(took >= Duration::from_secs(1), "takeover waited for the lease to expire, took {took:?}");
    eprintln!("takeover {took:?} after the kill (lease TTL 2 s)");
    t.close().await.unwrap();
}

/// 4. A reader in this process tails the file while a writer process publishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reader_tails_while_another_process_writes() {
    let dir = tempfile::tempdir().unwrap();
    let (url, t) = setup(&dir, "", "crash-tail", 4).await;
    t.close().await.unwrap();
    let writer = spawn_child("writer", &url, "crash-tail");
    writer.next("ACK", Duration::from_secs(30)).expect("writer started");
    // Another process opens the file while the writer runs.
    let bus = onex_bus::connect(&url).await.unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<(u32, u64, Instant)>();
    let tx = parking_lot::Mutex::new(tx);
    let handler = handler_fn(move |d: Delivery| {
        let _ = tx.lock().send((d.partition, d.offset, Instant::now()));
        async { Ok(()) }
    });
    bus.subscribe(Subscription::new("crash-tail", "tailer", handler)).await.unwrap();
    bus.start().await.unwrap();
    let done = writer.next("DONE", Duration::from_secs(120)).map(|_| Instant::now()).expect("writer finished");
    let mut seen: Vec<(u32, u64, Instant)> = Vec::new();
    while seen.len() < 3000 {
        seen.push(rx.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| panic!("tailer got {} of 3000", seen.len())));
    }
    bus.stop_consuming(Duration::from_secs(10)).await.unwrap();
    assert!(seen[0].2 < done, "the reader received events while the writer was still publishing");
    let mut last: HashMap<u32, u64> = HashMap::new();
    for (p, o, _) in &seen {
        if let Some(prev) = last.insert(*p, *o) {
            assert!(*o == prev + 1, "partition {p}: offset {o} after {prev}");
        }
    }
    let distinct: BTreeSet<(u32, u64)> = seen.iter().map(|(p, o, _)| (*p, *o)).collect();
    assert_eq!(distinct.len(), 3000);
}

/// The default URL creates its `.onex/` directory (the one directory ever created).
#[test]
fn default_url_creates_its_directory_only() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["child_process_entry", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "open-default")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("OPENED sqlite"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(dir.path().join(".onex/onex.db").is_file());
}
