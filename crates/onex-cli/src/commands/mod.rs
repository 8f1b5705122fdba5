//! Subcommand implementations. Each takes parsed arguments and a bus and returns an error
//! for `main` to print.

pub(crate) mod consume;
pub mod dlq;
pub mod exec;
pub(crate) mod publish;
pub mod schema;
pub(crate) mod topics;

use std::sync::Arc;

use onex_bus::TransportBus;
use onex_core::{Result, DEFAULT_BUS_URL};

/// Opens the bus named by `--bus` / `ONEX_BUS`, or the default.
pub(crate) async fn open_bus(url: Option<&str>) -> Result<Arc<TransportBus>> {
    let url = url.unwrap_or(DEFAULT_BUS_URL);
    onex_bus::connect(url).await
}
