//! # onex-bus — the onex event bus
//!
//! One consumer engine ([`engine`]) implements the delivery rules of DESIGN §3 for every
//! backend; a backend is a [`transport::Transport`]. [`TransportBus`] is the
//! [`onex_core::EventBus`] over any transport; [`connect`] builds one from a URL.
//!
//! | URL | backend | feature |
//! |---|---|---|
//! | `memory://` | in-process, no durability | always |
//! | `sqlite://PATH` | embedded durable log (default `sqlite://.onex/onex.db`) | `sqlite` |
//! | `kafka://HOST:PORT[,…]`, `redpanda://…` | Kafka / Redpanda via librdkafka | `kafka` |
//!
//! Every URL takes `partitions=N` (default partition count of auto-created topics) and
//! `auto_create_topics=false`.

pub mod bus;
pub mod dlq;
pub mod engine;
pub mod idempotency;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod memory;
pub mod partitioner;
pub mod provider;
pub mod publisher;
#[cfg(feature = "sqlite")]
pub mod sqlite;
pub mod transport;

#[cfg(feature = "testing")]
pub mod testing;

pub use bus::{BusConfig, TransportBus};
pub use dlq::{BusDlqHandler, DlqConfig};
pub use idempotency::MemoryIdempotencyStore;
pub use provider::{connect, connect_with, open_transport, BusProvider};
pub use publisher::{BusPublisher, TopicRouter};
