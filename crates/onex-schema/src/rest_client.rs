//! [`ConfluentRegistryClient`]: the Confluent schema registry REST API (Confluent, Redpanda, or
//! onex's own `rest_api` server) behind [`SchemaRegistry`].

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{ACCEPT, CONTENT_TYPE as CONTENT_TYPE_HEADER, RETRY_AFTER};
use reqwest::{Method, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;

use onex_core::{
    CompatibilityMode, CompatibilityReport, Error, ErrorKind, Result, SchemaInfo, SchemaRegistry, SchemaType, Secret, VersionSpec,
};

use crate::api_types::{
    type_name, CompatibilityResponse, ConfigResponse, ConfigUpdate, ErrorBody, IdResponse, SchemaById, SchemaRequest, SubjectAndVersion,
    SubjectVersion, CONTENT_TYPE,
};
use crate::errors::{codes, from_confluent, mode_name, parse_mode};
use crate::latest::{LatestCache, DEFAULT_LATEST_TTL};

/// Default time limit of one request.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer read from the registry (schemas are small; this bounds a misbehaving server).
pub const MAX_RESPONSE_BYTES: u64 = 16 * 1024 * 1024;

/// A client of a Confluent-compatible schema registry.
///
/// `validate` fetches the latest schema of the subject (cached for a short TTL, with its
/// compiled validator) and validates locally; everything else is one or two HTTP calls. Error
/// answers are mapped from their Confluent `error_code` (40401/40402/40403 → NotFound, 409 and
/// 422xx → Rejected, 5xx → Unavailable, 401/403 → Authentication, 429 → RateLimited), and keep
/// the code in the error's context (`error_code`). Basic-auth credentials are a [`Secret`]:
/// never printed, never in errors.
pub struct ConfluentRegistryClient {
    http: reqwest::Client,
    base: Url,
    auth: Option<(String, Secret)>,
    latest: LatestCache,
}

impl fmt::Debug for ConfluentRegistryClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfluentRegistryClient")
            .field("base", &self.base.as_str())
            .field("user", &self.auth.as_ref().map(|(u, _)| u.as_str()))
            .field("password", &self.auth.as_ref().map(|_| "***"))
            .finish()
    }
}

impl ConfluentRegistryClient {
    /// A client for the registry at `base_url` (`http://host:8081`, optionally with a path
    /// prefix). Credentials in the URL (`http://user:pass@host`) become basic auth and are
    /// removed from the URL.
    pub fn new(base_url: &str) -> Result<Self> {
        let mut base = Url::parse(base_url).map_err(|e| {
            Error::config(format!("invalid schema registry URL {base_url:?}: {e}; use http(s)://host:port")).with("url", base_url)
        })?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(
                Error::config(format!("invalid schema registry URL {base_url:?}: the scheme must be http or https")).with("url", base_url)
            );
        }
        let auth = if base.username().is_empty() {
            None
        } else {
            let user = base.username().to_string();
            let password = Secret::new(base.password().unwrap_or_default());
            let _ = base.set_username("");
            let _ = base.set_password(None);
            Some((user, password))
        };
        let http = reqwest::Client::builder()
            .timeout(DEFAULT_REQUEST_TIMEOUT)
            .build()
            .map_err(|e| Error::initialization(format!("cannot build the HTTP client: {e}")).with_source(e))?;
        Ok(ConfluentRegistryClient { http, base, auth, latest: LatestCache::new(DEFAULT_LATEST_TTL) })
    }

    /// Uses basic auth with `user` and `password`.
    pub fn with_basic_auth(mut self, user: impl Into<String>, password: Secret) -> Self {
        self.auth = Some((user.into(), password));
        self
    }

    /// How long `validate` trusts a fetched latest schema (default 5 s).
    pub fn with_cache_ttl(mut self, ttl: Duration) -> Self {
        self.latest = LatestCache::new(ttl);
        self
    }

    /// The registry's base URL (without credentials).
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Result<Url> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| Error::config(format!("schema registry URL {} cannot take a path", self.base)))?
            .pop_if_empty()
            .extend(segments);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(url)
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Option<&impl Serialize>,
    ) -> Result<T> {
        let url = self.url(segments, query)?;
        let mut request = self.http.request(method.clone(), url.clone()).header(ACCEPT, format!("{CONTENT_TYPE}, application/json"));
        if let Some((user, password)) = &self.auth {
            request = request.basic_auth(user, Some(password.expose()));
        }
        if let Some(body) = body {
            let bytes = serde_json::to_vec(body).map_err(|e| Error::protocol(format!("cannot encode the request: {e}")))?;
            request = request.header(CONTENT_TYPE_HEADER, CONTENT_TYPE).body(bytes);
        }
        let what = format!("{method} {}", url.path());
        let response = request.send().await.map_err(|e| transport_error(&what, e))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = read_limited(response, &what).await?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| {
                Error::protocol(format!("{what}: the registry answered {status} with an unexpected body: {e}"))
                    .with("body", crate::canonical::excerpt(&String::from_utf8_lossy(&bytes)))
            });
        }
        let (code, message) = match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(body) => (Some(body.error_code), body.message),
            Err(_) => (None, format!("{what} answered {status}: {}", crate::canonical::excerpt(&String::from_utf8_lossy(&bytes)))),
        };
        let err = match (from_confluent(status.as_u16(), code, &message), retry_after) {
            (Error::RateLimited { message, context, .. }, Some(after)) => Error::RateLimited { message, retry_after: Some(after), context },
            (err, _) => err,
        };
        Err(err.with("request", what))
    }

    async fn subject_version(&self, subject: &str, version: VersionSpec) -> Result<SchemaInfo> {
        let version = match version {
            VersionSpec::Latest => "latest".to_string(),
            VersionSpec::Number(v) => v.to_string(),
        };
        let found: SubjectVersion = self.call(Method::GET, &["subjects", subject, "versions", &version], &[], no_body()).await?;
        to_info(found)
    }
}

/// Reads an answer body, refusing one over [`MAX_RESPONSE_BYTES`] before and while reading it.
async fn read_limited(mut response: reqwest::Response, what: &str) -> Result<Vec<u8>> {
    if let Some(len) = response.content_length().filter(|len| *len > MAX_RESPONSE_BYTES) {
        return Err(Error::too_large(format!("{what}: the schema registry's answer"), len, MAX_RESPONSE_BYTES));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| transport_error(what, e))? {
        if (body.len() + chunk.len()) as u64 > MAX_RESPONSE_BYTES {
            return Err(Error::too_large(
                format!("{what}: the schema registry's answer"),
                (body.len() + chunk.len()) as u64,
                MAX_RESPONSE_BYTES,
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn no_body() -> Option<&'static ()> {
    None
}

/// A failed HTTP exchange: connect errors mean nothing was sent.
fn transport_error(what: &str, e: reqwest::Error) -> Error {
    if e.is_timeout() {
        Error::timeout(format!("{what}: the schema registry did not answer in time"), DEFAULT_REQUEST_TIMEOUT)
    } else if e.is_connect() {
        Error::connection(format!("{what}: cannot connect to the schema registry; check the URL and that it is running"))
            .with_source(e.without_url())
    } else {
        Error::unavailable(format!("{what}: the exchange with the schema registry failed")).with_source(e.without_url())
    }
}

/// `schemaType` as Confluent sends it: absent means AVRO.
fn parse_type(t: Option<&str>) -> Result<SchemaType> {
    match t {
        None => Ok(SchemaType::Avro),
        Some(t) => SchemaType::parse(t).map_err(|_| Error::protocol(format!("the registry answered an unknown schemaType {t:?}"))),
    }
}

fn to_info(v: SubjectVersion) -> Result<SchemaInfo> {
    Ok(SchemaInfo {
        schema_type: parse_type(v.schema_type.as_deref())?,
        subject: v.subject,
        version: v.version,
        id: v.id,
        schema: v.schema,
    })
}

#[async_trait]
impl SchemaRegistry for ConfluentRegistryClient {
    async fn register(&self, subject: &str, schema: &str, schema_type: SchemaType) -> Result<SchemaInfo> {
        if schema_type == SchemaType::Json {
            // Same answer as the embedded registry for text that is not JSON at all.
            crate::canonical::canonicalize(schema)?;
        }
        let body = SchemaRequest { schema: schema.to_string(), schema_type: Some(type_name(schema_type).to_string()) };
        let IdResponse { id } = self.call(Method::POST, &["subjects", subject, "versions"], &[], Some(&body)).await?;
        // The register answer holds only the id; the lookup gives the version.
        let found: SubjectVersion = self.call(Method::POST, &["subjects", subject], &[], Some(&body)).await?;
        if found.id != id {
            return Err(Error::protocol(format!(
                "the registry registered id {id} but the lookup of subject {subject:?} answered id {}",
                found.id
            )));
        }
        let mut info = to_info(found)?;
        info.schema_type = schema_type;
        Ok(info)
    }

    async fn get(&self, subject: &str, version: VersionSpec) -> Result<SchemaInfo> {
        self.subject_version(subject, version).await
    }

    async fn get_by_id(&self, id: u32) -> Result<SchemaInfo> {
        let id_text = id.to_string();
        let schema: SchemaById = self.call(Method::GET, &["schemas", "ids", &id_text], &[], no_body()).await?;
        let uses: Vec<SubjectAndVersion> = self.call(Method::GET, &["schemas", "ids", &id_text, "versions"], &[], no_body()).await?;
        let first = uses.into_iter().next().ok_or_else(|| {
            Error::not_found(format!("schema id {id} is not used by any subject version"))
                .with("id", id)
                .with("error_code", codes::SCHEMA_NOT_FOUND)
        })?;
        Ok(SchemaInfo {
            subject: first.subject,
            version: first.version,
            id,
            schema_type: parse_type(schema.schema_type.as_deref())?,
            schema: schema.schema,
        })
    }

    async fn subjects(&self) -> Result<Vec<String>> {
        self.call(Method::GET, &["subjects"], &[], no_body()).await
    }

    async fn versions(&self, subject: &str) -> Result<Vec<u32>> {
        self.call(Method::GET, &["subjects", subject, "versions"], &[], no_body()).await
    }

    async fn validate(&self, subject: &str, value: &serde_json::Value) -> Result<()> {
        let schema = self.latest.latest(subject, || self.subject_version(subject, VersionSpec::Latest)).await?;
        match schema {
            Some(schema) => schema.validate(Some(subject), value),
            None => Err(crate::errors::subject_not_found(subject)),
        }
    }

    async fn check_compatibility(&self, subject: &str, schema: &str, version: Option<VersionSpec>) -> Result<CompatibilityReport> {
        crate::canonical::canonicalize(schema)?;
        let body = SchemaRequest { schema: schema.to_string(), schema_type: Some("JSON".into()) };
        let version = version.map(|v| match v {
            VersionSpec::Latest => "latest".to_string(),
            VersionSpec::Number(n) => n.to_string(),
        });
        let mut segments = vec!["compatibility", "subjects", subject, "versions"];
        if let Some(v) = &version {
            segments.push(v);
        }
        let answer: CompatibilityResponse = self.call(Method::POST, &segments, &[("verbose", "true")], Some(&body)).await?;
        Ok(CompatibilityReport { compatible: answer.is_compatible, messages: answer.messages })
    }

    async fn set_compatibility(&self, subject: Option<&str>, mode: CompatibilityMode) -> Result<()> {
        let body = ConfigUpdate { compatibility: mode_name(mode).to_string() };
        let segments: Vec<&str> = match subject {
            Some(s) => vec!["config", s],
            None => vec!["config"],
        };
        let _: ConfigUpdate = self.call(Method::PUT, &segments, &[], Some(&body)).await?;
        Ok(())
    }

    async fn get_compatibility(&self, subject: Option<&str>) -> Result<CompatibilityMode> {
        let answer: Result<ConfigResponse> = match subject {
            Some(s) => self.call(Method::GET, &["config", s], &[("defaultToGlobal", "true")], no_body()).await,
            None => self.call(Method::GET, &["config"], &[], no_body()).await,
        };
        let answer = match answer {
            // Registries without `defaultToGlobal` answer 40408 for a subject with no level of its own.
            Err(e) if e.kind() == ErrorKind::NotFound && crate::errors::error_code(&e) == Some(40408) => {
                self.call(Method::GET, &["config"], &[], no_body()).await?
            }
            other => other?,
        };
        parse_mode(&answer.compatibility_level)
    }

    async fn delete_subject(&self, subject: &str, permanent: bool) -> Result<Vec<u32>> {
        let query: &[(&str, &str)] = if permanent { &[("permanent", "true")] } else { &[] };
        self.call(Method::DELETE, &["subjects", subject], query, no_body()).await
    }

    async fn delete_version(&self, subject: &str, version: u32, permanent: bool) -> Result<u32> {
        let query: &[(&str, &str)] = if permanent { &[("permanent", "true")] } else { &[] };
        self.call(Method::DELETE, &["subjects", subject, "versions", &version.to_string()], query, no_body()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_the_url_become_basic_auth_and_never_print() {
        let client = ConfluentRegistryClient::new("http://app:hunter2@127.0.0.1:8081/registry/").unwrap();
        assert_eq!(client.base_url().as_str(), "http://127.0.0.1:8081/registry/");
        let shown = format!("{client:?}");
        assert!(!shown.contains("hunter2") && shown.contains("app"), "{shown}");
        let url = client.url(&["subjects", "a/b c", "versions"], &[("permanent", "true")]).unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:8081/registry/subjects/a%2Fb%20c/versions?permanent=true");
    }

    #[test]
    fn bad_urls_are_config_errors() {
        for bad in ["not a url", "ftp://host/", "mailto:x@y"] {
            let err = ConfluentRegistryClient::new(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Config, "{bad}: {err}");
        }
    }
}
