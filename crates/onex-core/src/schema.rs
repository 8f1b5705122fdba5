//! The [`SchemaRegistry`] trait and its types (DESIGN §2.4).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Schema language. Only JSON Schema is supported for validation; the others are named so
/// they can be reported as unsupported clearly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum SchemaType {
    /// JSON Schema (draft-07, 2020-12).
    Json,
    /// Avro (not supported).
    Avro,
    /// Protobuf (not supported).
    Protobuf,
}

impl SchemaType {
    /// Parses `JSON`, `AVRO`, `PROTOBUF` (case-insensitive).
    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_uppercase().as_str() {
            "JSON" => Ok(SchemaType::Json),
            "AVRO" => Ok(SchemaType::Avro),
            "PROTOBUF" => Ok(SchemaType::Protobuf),
            other => Err(Error::config(format!("unknown schema type {other:?}: use JSON (AVRO and PROTOBUF are not supported)"))),
        }
    }
}

/// Compatibility modes, as in Confluent's registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CompatibilityMode {
    /// No checks.
    None,
    /// New schema reads data written with the latest.
    #[default]
    Backward,
    /// … with every earlier version.
    BackwardTransitive,
    /// Latest schema reads data written with the new one.
    Forward,
    /// … every earlier version reads it.
    ForwardTransitive,
    /// Backward and forward with the latest.
    Full,
    /// Backward and forward with every earlier version.
    FullTransitive,
}

/// Which version to fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionSpec {
    /// The newest (not deleted) version.
    Latest,
    /// A version number.
    Number(u32),
}

/// A stored schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaInfo {
    /// Subject.
    pub subject: String,
    /// Version within the subject.
    pub version: u32,
    /// Global id.
    pub id: u32,
    /// Schema language.
    pub schema_type: SchemaType,
    /// Schema text.
    pub schema: String,
}

/// Result of a compatibility check: every reason names a path and the rule that failed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompatibilityReport {
    /// Whether the new schema is compatible under the mode.
    pub compatible: bool,
    /// Why not.
    pub messages: Vec<String>,
}

/// A schema registry.
#[async_trait]
pub trait SchemaRegistry: Send + Sync {
    /// Registers `schema` under `subject` after the compatibility check; an identical schema
    /// returns the existing id and version. Returns the stored schema.
    async fn register(&self, subject: &str, schema: &str, schema_type: SchemaType) -> Result<SchemaInfo>;
    /// Fetches a version of a subject.
    async fn get(&self, subject: &str, version: VersionSpec) -> Result<SchemaInfo>;
    /// Fetches a schema by global id.
    async fn get_by_id(&self, id: u32) -> Result<SchemaInfo>;
    /// Subjects with at least one live version.
    async fn subjects(&self) -> Result<Vec<String>>;
    /// Live versions of a subject.
    async fn versions(&self, subject: &str) -> Result<Vec<u32>>;
    /// Validates `value` against the latest schema of `subject`; violations as [`Error::Schema`].
    async fn validate(&self, subject: &str, value: &serde_json::Value) -> Result<()>;
    /// Checks `schema` against `version` (or the versions the mode requires when `None`).
    async fn check_compatibility(&self, subject: &str, schema: &str, version: Option<VersionSpec>) -> Result<CompatibilityReport>;
    /// Sets the mode of `subject`, or the global mode when `None`.
    async fn set_compatibility(&self, subject: Option<&str>, mode: CompatibilityMode) -> Result<()>;
    /// The effective mode of `subject` (or the global mode).
    async fn get_compatibility(&self, subject: Option<&str>) -> Result<CompatibilityMode>;
    /// Deletes a subject (soft, or permanent after soft); returns the versions deleted.
    async fn delete_subject(&self, subject: &str, permanent: bool) -> Result<Vec<u32>>;
    /// Deletes one version (soft, or permanent after soft).
    async fn delete_version(&self, subject: &str, version: u32, permanent: bool) -> Result<u32>;
}

/// The publisher's pre-publish validation hook (and the consumer's opt-in check on receipt).
/// The schema registry implements it for subject `{topic}-value`.
#[async_trait]
pub trait PayloadValidator: Send + Sync {
    /// Validates a payload about to be published to (or received from) `topic`. `Ok` when
    /// no schema is registered for the topic; [`Error::Schema`] with every violation when
    /// the payload does not conform.
    async fn validate_payload(&self, topic: &str, payload: &[u8]) -> Result<()>;
}
