//! `onex bench http`: `ManagedHandler(HttpRestHandler)` GET/POST against raw reqwest with the
//! same client settings, both against one local HTTP/1.1 server started by the bench.
//!
//! The server is a minimal keep-alive HTTP/1.1 responder on 127.0.0.1:0 (GET answers a
//! 120-byte JSON item, POST a small JSON receipt), so the numbers measure the clients, not a
//! framework. Requests alternate GET and POST (a 90-byte JSON body); both sides parse the
//! JSON answer.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use onex_core::{ConnectionConfig, Error, OperationConfig, ProtocolHandler, ProtocolRequest, Result};
use onex_handlers::reqwest;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::report::{Latencies, ScenarioReport, Side};

const ITEM: &[u8] =
    br#"{"id":42,"sku":"sku-0042","name":"Blue widget","price_cents":1299,"currency":"EUR","in_stock":true,"tags":["a","b"]}"#;
const RECEIPT: &[u8] = br#"{"ok":true,"charge_id":"ch_0001"}"#;

/// Runs `call(i)` for i in 0..requests on `concurrency` tasks; returns wall time and latencies.
pub(crate) async fn drive<F, Fut>(concurrency: usize, requests: u64, call: F) -> Result<(Duration, Latencies)>
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<()>> + Send,
{
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (next, call) = (next.clone(), call.clone());
        tasks.spawn(async move {
            let mut lat = Latencies::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= requests {
                    return Ok::<_, Error>(lat);
                }
                let t = Instant::now();
                call(i).await?;
                lat.record(t.elapsed());
            }
        });
    }
    let mut all = Latencies::default();
    while let Some(joined) = tasks.join_next().await {
        let lat = joined.map_err(|e| Error::invalid_state(format!("a benchmark task failed: {e}")))??;
        all.merge(&lat);
    }
    Ok((started.elapsed(), all))
}

/// Measures both sides in alternating rounds (baseline, ours, ours, baseline, …) so that load
/// from other processes on the machine hits both alike; returns (ours, baseline) totals.
pub(crate) async fn alternate<B, BF, O, OF>(
    concurrency: usize,
    requests: u64,
    baseline: B,
    ours: O,
) -> Result<((Duration, Latencies), (Duration, Latencies))>
where
    B: Fn(u64) -> BF + Clone + Send + 'static,
    BF: Future<Output = Result<()>> + Send,
    O: Fn(u64) -> OF + Clone + Send + 'static,
    OF: Future<Output = Result<()>> + Send,
{
    const ROUNDS: u64 = 8;
    let per_round = (requests / ROUNDS).max(1);
    let (mut o_total, mut b_total) = ((Duration::ZERO, Latencies::default()), (Duration::ZERO, Latencies::default()));
    for round in 0..ROUNDS {
        let add = |total: &mut (Duration, Latencies), (elapsed, lat): (Duration, Latencies)| {
            total.0 += elapsed;
            total.1.merge(&lat);
        };
        if round % 2 == 0 {
            add(&mut b_total, drive(concurrency, per_round, baseline.clone()).await?);
            add(&mut o_total, drive(concurrency, per_round, ours.clone()).await?);
        } else {
            add(&mut o_total, drive(concurrency, per_round, ours.clone()).await?);
            add(&mut b_total, drive(concurrency, per_round, baseline.clone()).await?);
        }
    }
    Ok((o_total, b_total))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

async fn serve_connection(mut sock: TcpStream) -> std::io::Result<()> {
    sock.set_nodelay(true)?;
    let mut buf = BytesMut::with_capacity(8192);
    let mut out = Vec::with_capacity(512);
    loop {
        let head_end = loop {
            if let Some(p) = find(&buf, b"\r\n\r\n") {
                break p + 4;
            }
            if sock.read_buf(&mut buf).await? == 0 {
                return Ok(());
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let content_length: usize =
            head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
        while buf.len() < head_end + content_length {
            if sock.read_buf(&mut buf).await? == 0 {
                return Ok(());
            }
        }
        let body = if head.starts_with("post") { RECEIPT } else { ITEM };
        out.clear();
        out.extend_from_slice(
            format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n", body.len()).as_bytes(),
        );
        out.extend_from_slice(body);
        sock.write_all(&out).await?;
        buf.advance(head_end + content_length);
    }
}

async fn start_server() -> Result<String> {
    let listener =
        TcpListener::bind("127.0.0.1:0").await.map_err(|e| Error::initialization("cannot bind the bench HTTP server").with_source(e))?;
    let addr = listener.local_addr().map_err(|e| Error::initialization("bench server address").with_source(e))?;
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            tokio::spawn(serve_connection(sock));
        }
    });
    Ok(format!("http://{addr}"))
}

fn order(i: u64) -> serde_json::Value {
    json!({"order_id": i, "customer": "c-0042", "amount_cents": 1299, "currency": "EUR", "items": [{"sku": "sku-1", "qty": 2}]})
}

/// Runs the scenario at each concurrency, `requests` requests per side.
pub async fn run(concurrency: &[usize], requests: u64) -> Result<Vec<ScenarioReport>> {
    let base = start_server().await?;
    let mut reports = Vec::new();
    for &c in concurrency {
        let c = c.max(1);
        let mut config = ConnectionConfig::new(&base);
        config.pool.max = c;
        // Same client settings on both sides.
        let raw = reqwest::Client::builder()
            .pool_max_idle_per_host(config.pool.max)
            .pool_idle_timeout(config.pool.idle_timeout)
            .connect_timeout(config.timeouts.connect)
            .redirect(reqwest::redirect::Policy::limited(onex_handlers::http::DEFAULT_REDIRECTS))
            .build()
            .map_err(|e| Error::initialization("cannot build the baseline reqwest client").with_source(e))?;
        let timeout = config.timeouts.request;
        let ours = onex_handlers::build("http", config).await?;
        let op = Arc::new(OperationConfig::default());

        let baseline_call = {
            let (raw, base) = (raw.clone(), base.clone());
            move |i: u64| {
                let (raw, base) = (raw.clone(), base.clone());
                async move {
                    let req = if i & 1 == 0 {
                        raw.get(format!("{base}/items/{}", i % 1000))
                    } else {
                        raw.post(format!("{base}/orders")).json(&order(i))
                    };
                    let resp =
                        req.timeout(timeout).send().await.map_err(|e| Error::unavailable("baseline request failed").with_source(e))?;
                    if !resp.status().is_success() {
                        return Err(Error::unavailable(format!("baseline got {}", resp.status())));
                    }
                    let _: serde_json::Value = resp.json().await.map_err(|e| Error::decode(format!("baseline body: {e}")))?;
                    Ok(())
                }
            }
        };
        let ours_call = {
            let (ours, op) = (ours.clone(), op.clone());
            move |i: u64| {
                let (ours, op) = (ours.clone(), op.clone());
                async move {
                    let req = if i & 1 == 0 {
                        ProtocolRequest::new("GET", "/items/{id}").with_params(json!({"id": i % 1000}))
                    } else {
                        ProtocolRequest::new("POST", "/orders").with_json(order(i))
                    };
                    ours.execute(req, &op).await.map(|_| ())
                }
            }
        };
        // Warm both (connections, caches), then measure in alternating rounds.
        let warm = (requests / 10).clamp(100, 5_000);
        drive(c, warm, baseline_call.clone()).await?;
        drive(c, warm, ours_call.clone()).await?;
        let ((o_elapsed, o_lat), (b_elapsed, b_lat)) = alternate(c, requests, baseline_call, ours_call).await?;
        let requests = (requests / 8).max(1) * 8;
        ours.shutdown(Duration::from_secs(5)).await?;
        reports.push(ScenarioReport::new(
            format!("http/c{c}"),
            Side::new("ManagedHandler(HttpRestHandler) GET/POST", requests, o_elapsed, "req/s", &o_lat),
            Side::new("raw reqwest, same client settings", requests, b_elapsed, "req/s", &b_lat),
            0.9,
            json!({"concurrency": c, "requests": requests, "mix": "50% GET item, 50% POST order (JSON)", "server": "local HTTP/1.1 keep-alive on 127.0.0.1"}),
        ));
    }
    Ok(reports)
}
