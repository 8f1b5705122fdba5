//! A password in the URL or an auth header appears in no error, log line, describe or health.

use std::io::Write;
use std::sync::Arc;

use onex_core::{Auth, ConnectionConfig, OperationConfig, ProtocolHandler, ProtocolRequest, Secret};
use onex_handlers::HttpRestHandler;
use parking_lot::Mutex;

use super::support;

/// Collects formatted tracing output.
#[derive(Clone, Default)]
pub(crate) struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock()).into_owned()
    }
    /// The process-wide capture. A global subscriber, because a thread-local one misses
    /// callsites whose interest was cached by tests running on other threads.
    pub(crate) fn global() -> &'static Captured {
        static CAPTURE: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
        CAPTURE.get_or_init(|| {
            let me = Captured::default();
            let writer = me.clone();
            let sub = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                .with_writer(move || writer.clone())
                .with_ansi(false)
                .finish();
            tracing::subscriber::set_global_default(sub).expect("only this test installs a subscriber");
            me
        })
    }
}

#[tokio::test]
async fn url_password_and_tokens_never_print() {
    let logs = Captured::global();
    let dropping = support::start_dropping().await;
    let closed = support::closed_port().await;
    let srv = support::start().await;
    let mut outputs = Vec::new();
    for (base, auth) in [
        (dropping.replace("http://", "http://admin:hunter2-url@"), Auth::None),
        (closed.clone(), Auth::Bearer { token: Secret::new("hunter2-bearer") }),
        (srv.base.clone(), Auth::ApiKey { header: "X-API-Key".into(), key: Secret::new("hunter2-key") }),
        (srv.base.replace("http://", "http://admin:hunter2-url@"), Auth::None),
    ] {
        let mut cfg = ConnectionConfig::new(&base);
        cfg.auth = auth;
        cfg.options.insert("health_path".into(), "/status/401".into());
        outputs.push(format!("{cfg:?}"));
        let h = HttpRestHandler::new("secret-test");
        h.initialize(cfg).await.unwrap();
        for target in ["/status/401", "/status/500", "/status/204"] {
            match h.execute(ProtocolRequest::new("GET", target), &OperationConfig::default()).await {
                Ok(r) => outputs.push(format!("{r:?}")),
                Err(e) => outputs.push(format!("{e} | {e:?} | {} | {:?}", e.report(), e.context())),
            }
        }
        outputs.push(format!("{:?}", h.describe().unwrap()));
        outputs.push(serde_json::to_string(&h.describe().unwrap()).unwrap());
        outputs.push(format!("{:?}", h.health_check().await.unwrap()));
        outputs.push(format!("{h:?}"));
    }
    outputs.push(logs.text());
    let all = outputs.join("\n");
    assert!(all.contains("http call failed"), "tracing output was captured: {:?}", logs.text());
    for secret in ["hunter2", "aHVudGVy"] {
        assert!(!all.contains(secret), "secret {secret} leaked:\n{all}");
    }
    // The URL password really is sent (as basic auth) to the server.
    assert_eq!(srv.seen.headers.lock()["/status/204"]["authorization"], "Basic YWRtaW46aHVudGVyMi11cmw=");
}
