//! [`SqliteSchemaRegistry`]: the embedded registry, stored in the bus's sqlite file.

mod store;
mod tables;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use rusqlite::Connection;

use onex_core::{CompatibilityMode, CompatibilityReport, Error, Result, SchemaInfo, SchemaRegistry, SchemaType, VersionSpec};

use crate::validation::ValidatorCache;

/// The embedded schema registry (the default): subjects, integer versions, global ids,
/// compatibility config, soft and permanent deletes, in `schema_*` tables of the bus's sqlite
/// file (WAL mode, 5 s busy timeout, so a running service and an `onex` CLI can share it).
///
/// rusqlite is synchronous: every call runs on tokio's blocking pool, never on the runtime's
/// worker threads. Registration is one `BEGIN IMMEDIATE` transaction, so concurrent writers
/// (threads or processes) cannot both pass the compatibility check against the same version.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use onex_core::{SchemaRegistry, SchemaType, VersionSpec};
/// let dir = tempfile::tempdir().unwrap();
/// let registry = onex_schema::SqliteSchemaRegistry::open(dir.path().join("onex.db")).await?;
/// let info = registry.register("orders-value", r#"{"type": "object"}"#, SchemaType::Json).await?;
/// assert_eq!((info.version, registry.get("orders-value", VersionSpec::Latest).await?.id), (1, info.id));
/// registry.validate("orders-value", &serde_json::json!({"id": 1})).await?;
/// # Ok::<(), onex_core::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct SqliteSchemaRegistry {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Mutex<Connection>,
    path: PathBuf,
    validators: ValidatorCache,
}

impl fmt::Debug for SqliteSchemaRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteSchemaRegistry").field("path", &self.inner.path).finish()
    }
}

impl SqliteSchemaRegistry {
    /// Opens (or creates) the registry in the sqlite file at `path`. A file that is not an
    /// SQLite database fails with [`Error::Initialization`] and is left unchanged.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        tokio::task::spawn_blocking(move || Self::open_blocking(path))
            .await
            .map_err(|e| Error::initialization(format!("opening the schema registry panicked or was cancelled: {e}")))?
    }

    /// [`open`](Self::open) for synchronous callers (not on an async runtime thread).
    pub fn open_blocking(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let conn = tables::open(&path)?;
        Ok(SqliteSchemaRegistry { inner: Arc::new(Inner { conn: Mutex::new(conn), path, validators: ValidatorCache::new() }) })
    }

    /// The sqlite file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    async fn run<T, F>(&self, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &ValidatorCache) -> Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = inner.conn.lock();
            op(&mut conn, &inner.validators)
        })
        .await
        .map_err(|e| Error::unavailable(format!("schema registry operation panicked or was cancelled: {e}")))?
    }
}

#[async_trait]
impl SchemaRegistry for SqliteSchemaRegistry {
    async fn register(&self, subject: &str, schema: &str, schema_type: SchemaType) -> Result<SchemaInfo> {
        let (subject, schema) = (subject.to_string(), schema.to_string());
        self.run(move |conn, cache| store::register(conn, cache, &subject, &schema, schema_type)).await
    }

    async fn get(&self, subject: &str, version: VersionSpec) -> Result<SchemaInfo> {
        let subject = subject.to_string();
        self.run(move |conn, _| store::get(conn, &subject, version)).await
    }

    async fn get_by_id(&self, id: u32) -> Result<SchemaInfo> {
        self.run(move |conn, _| store::get_by_id(conn, id)).await
    }

    async fn subjects(&self) -> Result<Vec<String>> {
        self.run(|conn, _| store::subjects(conn)).await
    }

    async fn versions(&self, subject: &str) -> Result<Vec<u32>> {
        let subject = subject.to_string();
        self.run(move |conn, _| store::versions(conn, &subject)).await
    }

    async fn validate(&self, subject: &str, value: &serde_json::Value) -> Result<()> {
        let (subject, value) = (subject.to_string(), value.clone());
        self.run(move |conn, cache| {
            let info = store::get(conn, &subject, VersionSpec::Latest)?;
            cache.get_or_compile(&info.schema, info.schema_type)?.validate(Some(&subject), &value)
        })
        .await
    }

    async fn check_compatibility(&self, subject: &str, schema: &str, version: Option<VersionSpec>) -> Result<CompatibilityReport> {
        let (subject, schema) = (subject.to_string(), schema.to_string());
        self.run(move |conn, _| store::check(conn, &subject, &schema, version)).await
    }

    async fn set_compatibility(&self, subject: Option<&str>, mode: CompatibilityMode) -> Result<()> {
        let subject = subject.map(str::to_owned);
        self.run(move |conn, _| store::set_mode(conn, subject.as_deref(), mode)).await
    }

    async fn get_compatibility(&self, subject: Option<&str>) -> Result<CompatibilityMode> {
        let subject = subject.map(str::to_owned);
        self.run(move |conn, _| store::effective_mode(conn, subject.as_deref())).await
    }

    async fn delete_subject(&self, subject: &str, permanent: bool) -> Result<Vec<u32>> {
        let subject = subject.to_string();
        self.run(move |conn, _| store::delete_subject(conn, &subject, permanent)).await
    }

    async fn delete_version(&self, subject: &str, version: u32, permanent: bool) -> Result<u32> {
        let subject = subject.to_string();
        self.run(move |conn, _| store::delete_version(conn, &subject, version, permanent)).await
    }
}
