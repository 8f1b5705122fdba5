//! The embedded durable log (`sqlite://PATH`): the default backend.
//!
//! One SQLite file in WAL mode holds topics with N partitions, records (key, value, headers,
//! timestamp), per-group committed offsets and group leases. Several processes may open the
//! same file: readers (`onex consume`, `onex topics`) work while a service publishes, and
//! members of one group in different processes split the partitions through leases that
//! expire when a process dies.
//!
//! - **Publishing** goes through one writer thread per transport that commits everything
//!   queued in one transaction (group commit); `produce` returns after that commit. WAL
//!   checkpoints run on a thread of their own, not inside a publish's commit (see
//!   `checkpoint.rs`).
//! - **Durability** (`sync=`): `normal` (default) — an acknowledged publish survives a crash
//!   or `kill -9` of the process, not a power loss; `full` — it also survives power loss
//!   (an fsync per group commit).
//! - **Options**: `sync=normal|full`, `max_message_bytes` (default 1 MiB),
//!   `retention_ms`, `retention_records`, `retention_bytes` (defaults for new topics; a
//!   topic's `retention.ms` / `retention.records` / `retention.bytes` config wins),
//!   `lease_ttl_ms` (default 10000); `partitions` and `auto_create_topics` are bus options.
//! - **Paths**: `sqlite://rel/path.db` (relative to the working directory) or
//!   `sqlite:///abs/path.db`. A missing directory is an error, except the default
//!   `.onex/` of `sqlite://.onex/onex.db`, which is created.
//! - **Safety**: a file that is not SQLite, a SQLite database of another application (tables
//!   but no `onex_meta`) or a newer bus schema is refused before anything is written.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use onex_bus::sqlite::SqliteTransport;
//! use onex_bus::transport::{ProduceRecord, Transport};
//! let dir = tempfile::tempdir().unwrap();
//! let url = url::Url::parse(&format!("sqlite://{}/bus.db", dir.path().display())).unwrap();
//! let t = SqliteTransport::from_url(&url).await?;
//! t.admin().create_topic(onex_core::TopicSpec::new("orders", 4)).await?;
//! let rec = onex_core::Record { key: Some("k".into()), value: "v".into(), headers: Default::default() };
//! let receipts = t.produce("orders", vec![ProduceRecord::new(rec)]).await?;
//! assert_eq!(receipts[0].offset, 0);
//! t.close().await?;
//! # Ok::<(), onex_core::Error>(()) }).unwrap();
//! ```

mod admin;
mod checkpoint;
mod codec;
mod config;
mod consumer;
mod group;
mod read_ahead;
mod retention;
mod schema;
mod stored_envelope;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use onex_core::{validate_topic, Error, HealthStatus, Receipt, Result, StartFrom, TopicAdmin};
use parking_lot::Mutex;
use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::Notify;

use self::codec::SqlContext;
pub use self::config::{SqliteConfig, SyncMode, DEFAULT_PATH};
use self::consumer::SqliteConsumer;
use self::writer::Writer;
use crate::transport::{ProduceRecord, Transport, TransportConsumer, TransportFeatures};

/// The SQLite binding this transport is built with, so that tools and benchmarks comparing
/// against raw SQLite use the very same build.
pub use rusqlite;

/// The bus schema version this build reads and writes (`onex_meta.bus_schema_version`).
pub const BUS_SCHEMA_VERSION: i64 = schema::BUS_SCHEMA_VERSION;

/// What the transport, its consumers and their heartbeats share.
#[derive(Debug)]
pub(crate) struct Shared {
    path: PathBuf,
    config: Arc<SqliteConfig>,
    writer: Writer,
    /// Signalled after every commit that added records or changed a group.
    notify: Arc<Notify>,
    /// For admin, health and offset queries.
    reader: Arc<Mutex<Connection>>,
}

/// The sqlite transport. See the [module docs](self).
#[derive(Debug)]
pub struct SqliteTransport {
    shared: Arc<Shared>,
}

impl SqliteTransport {
    /// Opens (creating when missing) the database at `path`.
    pub async fn open(path: impl Into<PathBuf>, config: SqliteConfig) -> Result<Arc<SqliteTransport>> {
        let path = path.into();
        let config = Arc::new(config);
        let (p, c) = (path.clone(), config.clone());
        let (writer_conn, reader) = tokio::task::spawn_blocking(move || {
            let w = schema::open_writer(&p, &c)?;
            let r = schema::open_reader(&p)?;
            Ok::<_, Error>((w, r))
        })
        .await
        .map_err(|e| Error::initialization(format!("opening the sqlite bus failed: {e}")))??;
        let notify = Arc::new(Notify::new());
        let writer = Writer::start(writer_conn, config.clone(), notify.clone(), &path)?;
        tracing::debug!(path = %path.display(), sync = config.sync.as_str(), "opened sqlite bus");
        Ok(Arc::new(SqliteTransport { shared: Arc::new(Shared { path, config, writer, notify, reader: Arc::new(Mutex::new(reader)) }) }))
    }

    /// Opens the database a `sqlite://PATH?options` URL names.
    pub async fn from_url(url: &url::Url) -> Result<Arc<SqliteTransport>> {
        let (path, config) = SqliteConfig::from_url(url)?;
        Self::open(path, config).await
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// The settings.
    pub fn config(&self) -> &SqliteConfig {
        &self.shared.config
    }

    /// Runs a retention pass now (it also runs every `retention_interval`); returns the
    /// number of records deleted.
    pub async fn enforce_retention(&self) -> Result<u64> {
        self.shared.writer.call(retention::run).await
    }

    /// Runs `f` on the transport's reader connection, off the async threads.
    async fn read<T: Send + 'static>(&self, f: impl FnOnce(&Connection) -> Result<T> + Send + 'static) -> Result<T> {
        let reader = self.shared.reader.clone();
        tokio::task::spawn_blocking(move || f(&reader.lock()))
            .await
            .map_err(|e| Error::unavailable(format!("sqlite read task failed: {e}")))?
    }
}

#[async_trait]
impl Transport for SqliteTransport {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn features(&self) -> TransportFeatures {
        TransportFeatures { persistent: true, multi_process: true }
    }

    async fn produce(&self, topic: &str, records: Vec<ProduceRecord>) -> Result<Vec<Receipt>> {
        validate_topic(topic)?;
        let limit = self.shared.config.max_message_bytes;
        for (i, r) in records.iter().enumerate() {
            let size = r.record.byte_len();
            if size > limit {
                return Err(Error::too_large(
                    format!("record {i} of a batch of {} for topic {topic:?} (nothing of the batch was written; raise max_message_bytes or send smaller records)", records.len()),
                    size as u64,
                    limit as u64,
                ));
            }
        }
        if records.is_empty() {
            return Ok(Vec::new());
        }
        self.shared.writer.produce(topic, records).await
    }

    async fn consumer(&self, group: &str, topic: &str, start: StartFrom) -> Result<Box<dyn TransportConsumer>> {
        validate_topic(topic)?;
        if group.is_empty() {
            return Err(Error::config("a consumer needs a group name"));
        }
        let t = topic.to_string();
        let (topic_id, partition_ids) = self
            .read(move |conn| admin::lookup(conn, &t))
            .await?
            .ok_or_else(|| Error::not_found(format!("topic {topic:?} does not exist")).with("topic", topic))?;
        Ok(Box::new(SqliteConsumer::join(self.shared.clone(), group, topic, topic_id, partition_ids, start).await?))
    }

    fn admin(&self) -> &dyn TopicAdmin {
        self
    }

    async fn health(&self) -> Result<HealthStatus> {
        let started = Instant::now();
        let result = self
            .read(|conn| {
                let topics: i64 = conn.query_row("SELECT count(*) FROM bus_topics", [], |r| r.get(0)).sql("counting topics")?;
                let version: Option<String> = conn
                    .query_row("SELECT value FROM onex_meta WHERE key = ?1", [schema::VERSION_KEY], |r| r.get(0))
                    .optional()
                    .sql("reading the schema version")?;
                Ok((topics, version))
            })
            .await;
        let latency = started.elapsed();
        Ok(match result {
            Ok((topics, version)) => HealthStatus::healthy(
                latency,
                serde_json::json!({
                    "backend": "sqlite",
                    "path": self.shared.path.display().to_string(),
                    "sync": self.shared.config.sync.as_str(),
                    "topics": topics,
                    "schema_version": version,
                }),
            ),
            Err(e) => HealthStatus::unhealthy(latency, &e),
        })
    }

    async fn committed(&self, group: &str, topic: &str, partition: u32) -> Result<Option<u64>> {
        let (g, t) = (group.to_string(), topic.to_string());
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT o.next_offset FROM bus_offsets o JOIN bus_topics t ON t.id = o.topic_id WHERE o.group_name = ?1 AND t.name = ?2 AND o.part = ?3",
            )
            .and_then(|mut s| s.query_row(params![g, t, partition], |r| r.get::<_, i64>(0)).optional())
            .sql("reading a committed offset")
            .map(|o| o.map(|v| v as u64))
        })
        .await
    }

    async fn close(&self) -> Result<()> {
        self.shared.writer.shutdown().await;
        Ok(())
    }
}
