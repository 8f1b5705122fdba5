//! The JSON bodies of the Confluent schema registry API, shared by the client and the server.

use serde::{Deserialize, Serialize};

/// Content type of every request and answer.
pub(crate) const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// `POST /subjects/{s}/versions` and `POST /subjects/{s}` body.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SchemaRequest {
    pub(crate) schema: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) schema_type: Option<String>,
}

/// `POST /subjects/{s}/versions` answer.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct IdResponse {
    pub(crate) id: u32,
}

/// A subject version (`GET /subjects/{s}/versions/{v}`, `POST /subjects/{s}`).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SubjectVersion {
    pub(crate) subject: String,
    pub(crate) version: u32,
    pub(crate) id: u32,
    pub(crate) schema: String,
    /// Confluent omits it for AVRO.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) schema_type: Option<String>,
}

/// `GET /schemas/ids/{id}` answer.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SchemaById {
    pub(crate) schema: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) schema_type: Option<String>,
}

/// An element of `GET /schemas/ids/{id}/versions`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SubjectAndVersion {
    pub(crate) subject: String,
    pub(crate) version: u32,
}

/// `POST /compatibility/...` answer.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct CompatibilityResponse {
    pub(crate) is_compatible: bool,
    #[serde(default)]
    pub(crate) messages: Vec<String>,
}

/// `PUT /config[/{s}]` body and answer.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ConfigUpdate {
    pub(crate) compatibility: String,
}

/// `GET /config[/{s}]` answer.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ConfigResponse {
    pub(crate) compatibility_level: String,
}

/// Every error answer.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ErrorBody {
    pub(crate) error_code: u32,
    pub(crate) message: String,
}

/// `JSON`, `AVRO`, `PROTOBUF`.
pub(crate) fn type_name(t: onex_core::SchemaType) -> &'static str {
    match t {
        onex_core::SchemaType::Json => "JSON",
        onex_core::SchemaType::Avro => "AVRO",
        onex_core::SchemaType::Protobuf => "PROTOBUF",
    }
}
