//! The broker stops answering (SIGSTOP for 10 s, then SIGCONT) while a publisher runs:
//! publishes wait and succeed, or fail with clear errors, each within its timeout, and no
//! acknowledged event is lost; through a `BusPublisher`, the breaker opens and closes again. Runs against a tansu the test starts itself on another port,
//! so parallel tests keep their broker.
#![cfg(feature = "kafka")]

mod kafka_support;

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_support::{new_topic, FAST_GROUPS};
use onex_bus::kafka::KafkaTransport;
use onex_bus::publisher::BusPublisher;
use onex_bus::testing::Collector;
use onex_bus::TransportBus;
use onex_core::resilience::{BreakerConfig, BreakerState, RetryPolicy};
use onex_core::{Envelope, ErrorKind, EventBus, EventPublisher, SubscriptionOptions};
use parking_lot::Mutex;

fn tansu_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("TANSU_BIN") {
        return Some(PathBuf::from(p));
    }
    let home =
        std::env::var_os("CARGO_HOME").map(PathBuf::from).or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    let candidates =
        std::env::var_os("PATH").into_iter().flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>()).chain(home.map(|h| h.join("bin")));
    candidates.map(|d| d.join("tansu")).find(|p| p.is_file())
}

/// A tansu broker owned by this test; resumed and killed on drop.
struct Broker {
    child: Child,
    port: u16,
}

impl Broker {
    fn start(port: u16) -> Option<Broker> {
        let Some(bin) = tansu_binary() else {
            assert!(
                std::env::var_os("ONEX_REQUIRE_KAFKA").is_none(),
                "tansu is not installed and ONEX_REQUIRE_KAFKA is set; run scripts/tansu.sh"
            );
            // Written past the test harness's capture, so a skip is visible in a normal run.
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                b"\n!!!!! SKIPPED: tansu not found (scripts/tansu.sh installs it) !!!!!\n",
            );
            return None;
        };
        // The asked port unless taken; then any free port.
        let port =
            TcpListener::bind(("127.0.0.1", port)).or_else(|_| TcpListener::bind("127.0.0.1:0")).unwrap().local_addr().unwrap().port();
        let addr = format!("tcp://127.0.0.1:{port}");
        let log = std::fs::File::create(std::env::temp_dir().join(format!("onex-kafka-stall-{port}.log"))).unwrap();
        let child = Command::new(bin)
            .args(["broker", "--listener-url", &addr, "--advertised-listener-url", &addr, "--storage-engine", "memory://tansu/"])
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start tansu");
        Some(Broker { child, port })
    }

    /// A transport on this broker with `message.timeout.ms` = `message_timeout`, once it answers.
    async fn connect(&self, message_timeout: Duration) -> Arc<KafkaTransport> {
        let url = format!("kafka://127.0.0.1:{}?{FAST_GROUPS}&message.timeout.ms={}", self.port, message_timeout.as_millis());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match KafkaTransport::from_url_str(&url).await {
                Ok(t) => return t,
                Err(e) => assert!(Instant::now() < deadline, "own tansu on port {} did not come up: {e}", self.port),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// After `warm_up`, stops the broker for `frozen`, resumes it; returns when it froze and resumed.
    async fn freeze(&self, warm_up: Duration, frozen: Duration) -> (Instant, Instant) {
        tokio::time::sleep(warm_up).await;
        let frozen_at = Instant::now();
        self.signal("-STOP");
        tokio::time::sleep(frozen).await;
        self.signal("-CONT");
        (frozen_at, Instant::now())
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill").args([sig, &self.child.id().to_string()]).status().expect("kill(1)").success();
        assert!(ok, "kill {sig} {}", self.child.id());
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-CONT", &self.child.id().to_string()]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
struct Attempt {
    seq: u64,
    started: Instant,
    took: Duration,
    result: Result<(), (ErrorKind, String)>,
}

/// A delivery timeout longer than the freeze: publishes wait and then succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn frozen_broker_delays_publishes_within_their_timeout_and_loses_nothing() {
    let failed = freeze_scenario(Duration::from_secs(20), 19092).await;
    assert_eq!(failed, Some(0), "a 20 s delivery timeout outlasts a 10 s freeze");
}

/// A delivery timeout shorter than the freeze: publishes fail with a clear Timeout, and
/// what was acknowledged is still all there.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn frozen_broker_fails_publishes_clearly_after_their_timeout() {
    let failed = freeze_scenario(Duration::from_secs(4), 19094).await;
    assert!(failed.is_none_or(|n| n > 0), "a 4 s delivery timeout cannot outlast a 10 s freeze");
}

/// Runs the freeze with `message.timeout.ms` = `message_timeout`; returns how many publishes
/// failed (`None` when skipped).
async fn freeze_scenario(message_timeout: Duration, port: u16) -> Option<usize> {
    #[allow(non_snake_case)]
    let MESSAGE_TIMEOUT = message_timeout;
    let broker = Broker::start(port)?;
    let transport = broker.connect(MESSAGE_TIMEOUT).await;
    let topic = new_topic(&transport, "kafka-stall", 2).await;
    let bus = Arc::new(TransportBus::new(transport.clone()));

    let attempts = Arc::new(Mutex::new(Vec::<Attempt>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let publishers: Vec<_> = (0..4)
        .map(|_| {
            let (bus, topic, attempts, stop, next) = (bus.clone(), topic.clone(), attempts.clone(), stop.clone(), next.clone());
            tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let seq = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let env = Envelope::new("stall.tick.v1", &seq).unwrap().with_partition_key(format!("k{}", seq % 8));
                    let started = Instant::now();
                    // The outer limit only catches a publish that ignores its own timeout.
                    let outcome = tokio::time::timeout(MESSAGE_TIMEOUT * 2, bus.publish_envelope(&env, &topic)).await;
                    let result = match outcome {
                        Ok(Ok(_)) => Ok(()),
                        Ok(Err(e)) => Err((e.kind(), e.to_string())),
                        Err(_) => panic!("publish {seq} hung past twice its delivery timeout"),
                    };
                    attempts.lock().push(Attempt { seq, started, took: started.elapsed(), result });
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        })
        .collect();

    let (frozen_at, resumed_at) = broker.freeze(Duration::from_secs(2), Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for p in publishers {
        p.await.unwrap();
    }

    let attempts = std::mem::take(&mut *attempts.lock());
    // Publishes in flight while the broker was frozen (started before it resumed, still
    // unanswered a second into the freeze).
    let during: Vec<&Attempt> =
        attempts.iter().filter(|a| a.started < resumed_at && a.started + a.took > frozen_at + Duration::from_secs(1)).collect();
    assert!(!during.is_empty(), "publishes were in flight while the broker was frozen");
    let waited = attempts.iter().map(|a| a.took).max().unwrap();
    for a in &attempts {
        assert!(a.took <= MESSAGE_TIMEOUT + Duration::from_secs(5), "publish {} took {:?}, over its delivery timeout", a.seq, a.took);
        if let Err((kind, msg)) = &a.result {
            assert!(
                matches!(kind, ErrorKind::Timeout | ErrorKind::Connection | ErrorKind::Unavailable),
                "publish {} failed with {kind}: {msg}",
                a.seq
            );
            assert!(msg.contains(&topic) || msg.contains("127.0.0.1"), "the error says what failed: {msg}");
        }
    }
    // Publishing recovers once the broker answers again.
    let late: Vec<&Attempt> = attempts.iter().filter(|a| a.started > resumed_at + Duration::from_secs(2)).collect();
    assert!(!late.is_empty() && late.iter().all(|a| a.result.is_ok()), "publishes after the broker resumed succeed: {late:?}");
    let acked: BTreeSet<u64> = attempts.iter().filter(|a| a.result.is_ok()).map(|a| a.seq).collect();
    let failed = attempts.len() - acked.len();
    assert!(!acked.is_empty());

    // Every acknowledged event is in the log.
    let c = Collector::new();
    c.subscribe(&bus, &topic, "stall-reader", SubscriptionOptions::default()).await;
    bus.start().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    let read: BTreeSet<u64> = loop {
        let read: BTreeSet<u64> = c.deliveries().iter().map(|d| d.envelope.payload_as::<u64>().unwrap()).collect();
        if acked.is_subset(&read) {
            break read;
        }
        assert!(Instant::now() < deadline, "{} acknowledged events missing from the log", acked.difference(&read).count());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    bus.stop_consuming(Duration::from_secs(10)).await.unwrap();
    eprintln!(
        "stall test: {} publishes ({} in flight during the 10 s freeze), {} acknowledged, {failed} failed clearly, longest wait {waited:?}; {} records read back",
        attempts.len(),
        during.len(),
        acked.len(),
        read.len()
    );
    Some(failed)
}

/// Through a [`BusPublisher`]: the frozen broker's timeouts open its breaker, publishes then
/// fail fast with `CircuitOpen`, and after the broker resumes a probe closes it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn frozen_broker_opens_the_publisher_breaker_and_a_probe_closes_it() {
    const MESSAGE_TIMEOUT: Duration = Duration::from_secs(2);
    let Some(broker) = Broker::start(19096) else { return };
    let transport = broker.connect(MESSAGE_TIMEOUT).await;
    let topic = new_topic(&transport, "kafka-breaker", 2).await;
    let bus: Arc<dyn EventBus> = Arc::new(TransportBus::new(transport.clone()));
    let breaker = BreakerConfig { failure_threshold: 3, reset_timeout: Duration::from_secs(1), half_open_probes: 1, ..Default::default() };
    let publisher = Arc::new(
        BusPublisher::builder(bus.clone())
            .retry(RetryPolicy { max_retries: 0, ..Default::default() })
            .breaker(breaker)
            .breaker_name("stall-test")
            .build()
            .unwrap(),
    );

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let states = Arc::new(Mutex::new(Vec::<(Instant, BreakerState)>::new()));
    let errors = Arc::new(Mutex::new(Vec::<(ErrorKind, Duration)>::new()));
    let monitor = {
        let (publisher, stop, states) = (publisher.clone(), stop.clone(), states.clone());
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                states.lock().push((Instant::now(), publisher.breaker().state()));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let publishers: Vec<_> = (0..4u64)
        .map(|w| {
            let (publisher, topic, stop, errors) = (publisher.clone(), topic.clone(), stop.clone(), errors.clone());
            tokio::spawn(async move {
                let mut seq = w;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let env = Envelope::new("stall.tick.v1", &seq).unwrap().with_partition_key(format!("k{}", seq % 8));
                    let started = Instant::now();
                    if let Err(e) = publisher.publish_envelope(&env, Some(&topic)).await {
                        errors.lock().push((e.kind(), started.elapsed()));
                    }
                    seq += 4;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        })
        .collect();

    let (frozen_at, resumed_at) = broker.freeze(Duration::from_secs(2), Duration::from_secs(8)).await;
    // Reset timeout, one probe, and librdkafka reconnecting: well inside this.
    let deadline = resumed_at + Duration::from_secs(30);
    while publisher.breaker().state() != BreakerState::Closed || Instant::now() < resumed_at + Duration::from_secs(3) {
        assert!(Instant::now() < deadline, "the breaker did not close after the broker resumed: {:?}", publisher.breaker().state());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for p in publishers {
        p.await.unwrap();
    }
    monitor.await.unwrap();

    let states = std::mem::take(&mut *states.lock());
    let opened = states.iter().find(|(t, s)| *s == BreakerState::Open && *t > frozen_at).map(|(t, _)| *t);
    let opened = opened.expect("the breaker opened while the broker was frozen");
    assert!(opened < resumed_at, "it opened during the freeze, not after");
    let closed_at = states.iter().find(|(t, s)| *s == BreakerState::Closed && *t > resumed_at).map(|(t, _)| *t).expect("closed again");
    assert_eq!(states.last().map(|(_, s)| *s), Some(BreakerState::Closed), "and stays closed while the broker answers");
    let errors = std::mem::take(&mut *errors.lock());
    let fast: Vec<&(ErrorKind, Duration)> = errors.iter().filter(|(k, _)| *k == ErrorKind::CircuitOpen).collect();
    assert!(!fast.is_empty(), "publishes while open fail with CircuitOpen: {errors:?}");
    assert!(fast.iter().all(|(_, took)| *took < Duration::from_millis(500)), "CircuitOpen fails fast: {fast:?}");
    assert!(
        errors
            .iter()
            .all(|(k, _)| matches!(k, ErrorKind::CircuitOpen | ErrorKind::Timeout | ErrorKind::Connection | ErrorKind::Unavailable)),
        "only clear errors: {errors:?}"
    );
    let metrics = publisher.metrics();
    assert!(metrics.events_published > 0);
    eprintln!(
        "breaker test: opened {:?} into the freeze, closed {:?} after the broker resumed; {} publishes failed fast, {} failed, {} published",
        opened - frozen_at,
        closed_at - resumed_at,
        fast.len(),
        errors.len(),
        metrics.events_published
    );
}
