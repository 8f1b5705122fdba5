//! A password in the URL never shows in errors, describe, health or logs.

use std::io::Write;
use std::sync::Arc;

use onex_core::{ConnectionConfig, ProtocolHandler, ProtocolRequest};
use onex_handlers::PostgresHandler;
use parking_lot::Mutex;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn url_password_never_prints() {
    let logs = Captured::default();
    let writer = logs.clone();
    let sub = tracing_subscriber::fmt().with_max_level(tracing::Level::TRACE).with_writer(move || writer.clone()).with_ansi(false).finish();
    tracing::subscriber::set_global_default(sub).expect("the only subscriber of this test binary");
    let mut out = Vec::new();
    // Trust auth accepts the password it ignores; port 1 refuses.
    for url in [
        "postgres://root:hunter2pg@127.0.0.1:5432/test",
        "postgres://root:hunter2pg@127.0.0.1:1/test",
        "postgres://onex_nobody:hunter2pg@127.0.0.1:5432/test",
    ] {
        let cfg = ConnectionConfig::new(url);
        out.push(format!("{cfg:?} {}", serde_json::to_string(&cfg).unwrap()));
        let h = PostgresHandler::new("secret-pg");
        match h.initialize(cfg).await {
            Err(e) => out.push(format!("{e} | {e:?} | {}", e.report())),
            Ok(()) => {
                for sql in ["select 1/0", "select * from nope_missing", "select 1; select 2"] {
                    let e = h.execute(ProtocolRequest::new("db.query", sql), &super::op()).await.unwrap_err();
                    out.push(format!("{e} | {e:?} | {}", e.report()));
                }
                out.push(format!("{:?}", h.describe().unwrap()));
                out.push(serde_json::to_string(&h.describe().unwrap()).unwrap());
                out.push(format!("{:?}", h.health_check().await.unwrap()));
                out.push(format!("{h:?}"));
            }
        }
    }
    let logs = String::from_utf8_lossy(&logs.0.lock()).into_owned();
    assert!(logs.contains("postgres call failed"), "logs were captured");
    out.push(logs);
    let all = out.join("\n");
    assert!(all.contains("127.0.0.1"), "outputs were collected");
    assert!(!all.contains("hunter2pg"), "password leaked:\n{all}");
}
