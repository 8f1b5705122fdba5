//! The Confluent schema registry HTTP API over any [`SchemaRegistry`], as an axum router.
//!
//! Endpoints: `GET /` (`{}`, for health checks), `GET /schemas/types` (`["JSON"]`), `GET /subjects`, `GET|POST /subjects/{s}/versions`, `POST /subjects/{s}`
//! (lookup), `GET|DELETE /subjects/{s}/versions/{v|latest|-1}`, `DELETE /subjects/{s}`,
//! `GET /schemas/ids/{id}`, `GET /schemas/ids/{id}/versions`,
//! `POST /compatibility/subjects/{s}/versions[/{v}]`, `GET|PUT /config[/{s}]`. Answers use
//! `application/vnd.schemaregistry.v1+json`; errors are `{"error_code", "message"}`.
//!
//! Differences from Confluent: a register request without `schemaType` means JSON (the only
//! type onex supports) rather than AVRO; `GET /config/{s}` always answers the effective level
//! (as with `defaultToGlobal=true`); `GET /schemas/ids/{id}/versions` lists one use of the id.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use std::sync::Arc;
//! let registry = Arc::new(onex_schema::SqliteSchemaRegistry::open(".onex/onex.db").await.unwrap());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8081").await?;
//! axum::serve(listener, onex_schema::rest_api::router(registry)).await
//! # }
//! ```

mod error;

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::de::DeserializeOwned;
use serde::Serialize;

use onex_core::{Error, SchemaRegistry, SchemaType, VersionSpec};

pub use error::ApiError;

use crate::api_types::{
    type_name, CompatibilityResponse, ConfigResponse, ConfigUpdate, IdResponse, SchemaById, SchemaRequest, SubjectAndVersion,
    SubjectVersion, CONTENT_TYPE,
};
use crate::canonical::canonicalize;
use crate::errors::{codes, mode_name, parse_mode};

type Registry = Arc<dyn SchemaRegistry>;
type Params = Query<HashMap<String, String>>;
type ApiResult = Result<Response, ApiError>;

/// The Confluent-compatible API over `registry`. Mount it at the root or under a prefix
/// (`Router::nest("/registry", router(r))`).
pub fn router(registry: Arc<dyn SchemaRegistry>) -> Router {
    Router::new()
        .route("/", get(|| async { ok(&serde_json::json!({})) }))
        .route("/schemas/types", get(|| async { ok(&["JSON"]) }))
        .route("/subjects", get(list_subjects))
        .route("/subjects/{subject}", post(lookup).delete(delete_subject))
        .route("/subjects/{subject}/versions", get(list_versions).post(register))
        .route("/subjects/{subject}/versions/{version}", get(get_version).delete(delete_version))
        .route("/schemas/ids/{id}", get(schema_by_id))
        .route("/schemas/ids/{id}/versions", get(id_versions))
        .route("/compatibility/subjects/{subject}/versions", post(check_all))
        .route("/compatibility/subjects/{subject}/versions/{version}", post(check_version))
        .route("/config", get(get_global_config).put(put_global_config))
        .route("/config/{subject}", get(get_subject_config).put(put_subject_config))
        .fallback(|| async { ApiError(Error::not_found("no such endpoint of the schema registry API")) })
        .with_state(registry)
}

pub(crate) fn json_response<T: Serialize>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (status, [(header::CONTENT_TYPE, CONTENT_TYPE)], bytes).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("cannot encode the answer: {e}")).into_response(),
    }
}

fn ok<T: Serialize>(body: &T) -> ApiResult {
    Ok(json_response(StatusCode::OK, body))
}

fn parse_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError(Error::rejected(format!("invalid request body: {e}")).with("error_code", 422)))
}

fn flag(params: &HashMap<String, String>, name: &str) -> bool {
    params.get(name).is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

fn parse_version(text: &str) -> Result<VersionSpec, ApiError> {
    match text {
        "latest" | "-1" => Ok(VersionSpec::Latest),
        n => match n.parse::<u32>() {
            Ok(v) if v > 0 => Ok(VersionSpec::Number(v)),
            _ => Err(ApiError(
                Error::rejected(format!("invalid version {n:?}: use a positive integer, `latest` or -1"))
                    .with("error_code", codes::INVALID_VERSION),
            )),
        },
    }
}

fn parse_type(t: Option<&str>) -> Result<SchemaType, ApiError> {
    match t {
        None => Ok(SchemaType::Json),
        Some(t) => SchemaType::parse(t).map_err(|e| ApiError(Error::rejected(e.to_string()).with("error_code", codes::INVALID_SCHEMA))),
    }
}

fn subject_version(info: onex_core::SchemaInfo) -> SubjectVersion {
    SubjectVersion {
        subject: info.subject,
        version: info.version,
        id: info.id,
        schema: info.schema,
        schema_type: Some(type_name(info.schema_type).into()),
    }
}

async fn list_subjects(State(r): State<Registry>) -> ApiResult {
    ok(&r.subjects().await?)
}

async fn list_versions(State(r): State<Registry>, Path(subject): Path<String>) -> ApiResult {
    ok(&r.versions(&subject).await?)
}

async fn register(State(r): State<Registry>, Path(subject): Path<String>, body: Bytes) -> ApiResult {
    let request: SchemaRequest = parse_body(&body)?;
    let info = r.register(&subject, &request.schema, parse_type(request.schema_type.as_deref())?).await?;
    ok(&IdResponse { id: info.id })
}

async fn lookup(State(r): State<Registry>, Path(subject): Path<String>, body: Bytes) -> ApiResult {
    let request: SchemaRequest = parse_body(&body)?;
    let (_, wanted) = canonicalize(&request.schema)?;
    let schema_type = parse_type(request.schema_type.as_deref())?;
    for version in r.versions(&subject).await?.into_iter().rev() {
        let info = r.get(&subject, VersionSpec::Number(version)).await?;
        if info.schema_type == schema_type && canonicalize(&info.schema).is_ok_and(|(_, c)| c == wanted) {
            return ok(&subject_version(info));
        }
    }
    Err(ApiError(
        Error::not_found(format!("subject {subject:?} has no version with this schema"))
            .with("subject", &subject)
            .with("error_code", codes::SCHEMA_NOT_FOUND),
    ))
}

async fn get_version(State(r): State<Registry>, Path((subject, version)): Path<(String, String)>) -> ApiResult {
    ok(&subject_version(r.get(&subject, parse_version(&version)?).await?))
}

async fn delete_subject(State(r): State<Registry>, Path(subject): Path<String>, Query(params): Params) -> ApiResult {
    ok(&r.delete_subject(&subject, flag(&params, "permanent")).await?)
}

async fn delete_version(State(r): State<Registry>, Path((subject, version)): Path<(String, String)>, Query(params): Params) -> ApiResult {
    let version = match parse_version(&version)? {
        VersionSpec::Number(v) => v,
        VersionSpec::Latest => r.get(&subject, VersionSpec::Latest).await?.version,
    };
    ok(&r.delete_version(&subject, version, flag(&params, "permanent")).await?)
}

fn parse_id(text: &str) -> Result<u32, ApiError> {
    text.parse().map_err(|_| {
        ApiError(
            Error::not_found(format!("no schema with id {text:?}: ids are positive integers")).with("error_code", codes::SCHEMA_NOT_FOUND),
        )
    })
}

async fn schema_by_id(State(r): State<Registry>, Path(id): Path<String>) -> ApiResult {
    let info = r.get_by_id(parse_id(&id)?).await?;
    ok(&SchemaById { schema: info.schema, schema_type: Some(type_name(info.schema_type).into()) })
}

async fn id_versions(State(r): State<Registry>, Path(id): Path<String>) -> ApiResult {
    let info = r.get_by_id(parse_id(&id)?).await?;
    ok(&vec![SubjectAndVersion { subject: info.subject, version: info.version }])
}

async fn check(r: &Registry, subject: &str, version: Option<VersionSpec>, body: &Bytes) -> ApiResult {
    let request: SchemaRequest = parse_body(body)?;
    parse_type(request.schema_type.as_deref()).and_then(|t| crate::validation::ensure_supported(t).map_err(ApiError))?;
    let report = r.check_compatibility(subject, &request.schema, version).await?;
    ok(&CompatibilityResponse { is_compatible: report.compatible, messages: report.messages })
}

async fn check_all(State(r): State<Registry>, Path(subject): Path<String>, body: Bytes) -> ApiResult {
    check(&r, &subject, None, &body).await
}

async fn check_version(State(r): State<Registry>, Path((subject, version)): Path<(String, String)>, body: Bytes) -> ApiResult {
    let version = parse_version(&version)?;
    check(&r, &subject, Some(version), &body).await
}

async fn get_global_config(State(r): State<Registry>) -> ApiResult {
    ok(&ConfigResponse { compatibility_level: mode_name(r.get_compatibility(None).await?).into() })
}

async fn get_subject_config(State(r): State<Registry>, Path(subject): Path<String>) -> ApiResult {
    ok(&ConfigResponse { compatibility_level: mode_name(r.get_compatibility(Some(&subject)).await?).into() })
}

async fn put_global_config(State(r): State<Registry>, body: Bytes) -> ApiResult {
    let update: ConfigUpdate = parse_body(&body)?;
    let mode = parse_mode(&update.compatibility)?;
    r.set_compatibility(None, mode).await?;
    ok(&ConfigUpdate { compatibility: mode_name(mode).into() })
}

async fn put_subject_config(State(r): State<Registry>, Path(subject): Path<String>, body: Bytes) -> ApiResult {
    let update: ConfigUpdate = parse_body(&body)?;
    let mode = parse_mode(&update.compatibility)?;
    r.set_compatibility(Some(&subject), mode).await?;
    ok(&ConfigUpdate { compatibility: mode_name(mode).into() })
}
