//! # onex-schema — the onex schema registry
//!
//! Work in progress.

#[cfg(any(feature = "rest", feature = "server"))]
mod api_types;
pub mod canonical;
pub mod compat;
pub mod errors;
mod latest;
mod payload_validator;
#[cfg(feature = "rest")]
mod rest_client;
#[cfg(feature = "server")]
pub mod rest_api;
#[cfg(feature = "sqlite")]
mod sqlite;
pub mod validation;
mod wire;

pub use latest::DEFAULT_LATEST_TTL;
pub use payload_validator::RegistryValidator;
#[cfg(feature = "rest")]
pub use rest_client::{ConfluentRegistryClient, DEFAULT_REQUEST_TIMEOUT};
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteSchemaRegistry;
pub use wire::{decode_value, encode_confluent, HEADER_LEN, MAGIC_BYTE};
