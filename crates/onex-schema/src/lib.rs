//! # onex-schema — the onex schema registry
//!
//! Work in progress.

pub mod canonical;
pub mod compat;
pub mod errors;
mod latest;
mod payload_validator;
#[cfg(feature = "sqlite")]
mod sqlite;
pub mod validation;
mod wire;

pub use latest::DEFAULT_LATEST_TTL;
pub use payload_validator::RegistryValidator;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteSchemaRegistry;
pub use wire::{decode_value, encode_confluent, HEADER_LEN, MAGIC_BYTE};
