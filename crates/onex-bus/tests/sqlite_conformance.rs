//! The conformance suite on the sqlite transport. Every `bus()` opens a NEW transport on the
//! same file: a restart, or another process, as far as the bus can tell.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use onex_bus::sqlite::{SqliteConfig, SqliteTransport};
use onex_bus::testing::{Features, Harness};
use onex_bus::{BusConfig, TransportBus};

/// A temp directory with one database file; each bus is a fresh transport on it.
struct Sqlite {
    dir: tempfile::TempDir,
    partitions: u32,
    config: SqliteConfig,
}

impl Sqlite {
    fn new(partitions: u32, config: SqliteConfig) -> Self {
        Sqlite { dir: tempfile::tempdir().expect("temp dir"), partitions, config }
    }
}

#[async_trait]
impl Harness for Sqlite {
    fn features(&self) -> Features {
        // Members on different transports see each other by polling the file (50 ms) and
        // hand partitions over through leases: give a join a second to settle.
        Features { persistent: true, settle: Duration::from_secs(1), ..Features::default() }
    }

    async fn bus(&self) -> Arc<TransportBus> {
        let transport = SqliteTransport::open(self.dir.path().join("onex.db"), self.config.clone()).await.expect("open sqlite bus");
        let config = BusConfig { default_partitions: self.partitions, ..BusConfig::default() };
        Arc::new(TransportBus::with_config(transport, config))
    }
}

onex_bus::conformance_suite!(sqlite_default, crate::Sqlite::new(4, onex_bus::sqlite::SqliteConfig::default()));
onex_bus::conformance_suite!(
    sqlite_one_partition_sync_full,
    crate::Sqlite::new(1, onex_bus::sqlite::SqliteConfig { sync: onex_bus::sqlite::SyncMode::Full, ..Default::default() })
);
