//! The conformance suite on the memory transport, under two configurations.

use std::sync::Arc;

use async_trait::async_trait;
use onex_bus::memory::{MemoryConfig, MemoryTransport};
use onex_bus::testing::{Features, Harness};
use onex_bus::{BusConfig, TransportBus};

/// One memory transport shared by every bus the harness makes (a "restart" keeps storage).
struct Memory {
    transport: MemoryTransport,
    partitions: u32,
}

impl Memory {
    fn new(partitions: u32, config: MemoryConfig) -> Self {
        Memory { transport: MemoryTransport::new(config), partitions }
    }
}

#[async_trait]
impl Harness for Memory {
    fn features(&self) -> Features {
        Features::default()
    }

    async fn bus(&self) -> Arc<TransportBus> {
        let config = BusConfig { default_partitions: self.partitions, ..BusConfig::default() };
        Arc::new(TransportBus::with_config(Arc::new(self.transport.clone()), config))
    }
}

onex_bus::conformance_suite!(memory_default, crate::Memory::new(4, onex_bus::memory::MemoryConfig::default()));
onex_bus::conformance_suite!(
    memory_one_partition_small_retention,
    crate::Memory::new(1, onex_bus::memory::MemoryConfig { retention_records: Some(50_000), ..Default::default() })
);
