//! Backends for the shared registry suite: the embedded registry, and the REST client talking
//! real HTTP to `rest_api::router` over an embedded registry in its own temp dir.

use std::sync::Arc;

use onex_core::{Error, ErrorKind, SchemaRegistry};
use onex_schema::{ConfluentRegistryClient, SqliteSchemaRegistry};
use tempfile::TempDir;

pub(crate) struct Backend {
    pub(crate) registry: Arc<dyn SchemaRegistry>,
    _dir: TempDir,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

pub(crate) async fn embedded() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let registry = SqliteSchemaRegistry::open(dir.path().join("onex.db")).await.unwrap();
    Backend { registry: Arc::new(registry), _dir: dir, server: None }
}

/// Starts the API server on 127.0.0.1:0 and returns its base URL and task.
pub(crate) async fn serve(registry: Arc<dyn SchemaRegistry>) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(listener, onex_schema::rest_api::router(registry)).await.unwrap();
    });
    (format!("http://{addr}"), server)
}

pub(crate) async fn rest() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteSchemaRegistry::open(dir.path().join("onex.db")).await.unwrap();
    let (url, server) = serve(Arc::new(store)).await;
    let client = ConfluentRegistryClient::new(&url).unwrap();
    Backend { registry: Arc::new(client), _dir: dir, server: Some(server) }
}

/// Asserts the error kind and returns the error for further checks.
#[track_caller]
pub(crate) fn expect_kind<T: std::fmt::Debug>(result: onex_core::Result<T>, kind: ErrorKind) -> Error {
    match result {
        Ok(v) => panic!("expected a {kind} error, got Ok({v:?})"),
        Err(e) => {
            assert_eq!(e.kind(), kind, "unexpected error: {e}");
            e
        }
    }
}

/// The Confluent error code carried by an error.
pub(crate) fn code(err: &Error) -> Option<u32> {
    onex_schema::errors::error_code(err)
}
