//! [`GraphQlHandler`]: GraphQL over the HTTP handler (POST of `{query, variables, operationName}`).
//!
//! - `graphql.query` / `graphql.mutation`: `target` is the document; `params` is
//!   `{"variables": {...}, "operationName": "..."}` (both optional). A `graphql.query` whose
//!   document is a mutation is rejected, so the retry policy of queries never repeats a write.
//! - The connection URL is the GraphQL endpoint itself (e.g. `http://127.0.0.1:8080/graphql`);
//!   every HTTP option (auth, pool, timeouts, limits) applies, and HTTP failures keep their
//!   HTTP classification.
//! - An answer with a non-empty `errors` array is [`Error::Rejected`]: the message lists the
//!   error messages; the context holds `errors` (JSON array of `{message, path}`) and, when the
//!   server sent partial results, `data` (the partial `data` as JSON text).
//! - Success: `data` is the `data` member; `extensions`, when present, is in metadata.
//! - Health: POST `{ __typename }`.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use onex_core::{
    ConnectionConfig, Error, HandlerDescriptor, HealthStatus, OperationConfig, ProtocolHandler, ProtocolRequest, ProtocolResponse, Result,
};
use serde_json::{json, Map, Value};

use crate::common::{json_type, params_object, unknown_operation};
use crate::http::HttpRestHandler;

/// Operations of the GraphQL handler.
pub const GRAPHQL_OPERATIONS: [&str; 2] = ["graphql.query", "graphql.mutation"];

/// The GraphQL handler. One attempt per `execute`.
#[derive(Debug)]
pub struct GraphQlHandler {
    name: String,
    http: HttpRestHandler,
}

impl Default for GraphQlHandler {
    fn default() -> Self {
        GraphQlHandler::new("graphql")
    }
}

/// Whether the document's first operation is a mutation (comments and whitespace skipped).
fn is_mutation(document: &str) -> bool {
    let mut rest = document;
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == ',' || c == '\u{feff}');
        if rest.starts_with('#') {
            rest = rest.find('\n').map(|i| &rest[i..]).unwrap_or("");
            continue;
        }
        break;
    }
    rest.starts_with("mutation") && !rest[8..].starts_with(|c: char| c.is_alphanumeric() || c == '_')
}

/// Builds the POST body from the request.
fn request_body(req: &ProtocolRequest) -> Result<Value> {
    if req.target.trim().is_empty() {
        return Err(Error::rejected(format!("{} needs the GraphQL document in the target", req.operation)));
    }
    if req.operation == "graphql.query" && is_mutation(&req.target) {
        return Err(Error::rejected("the document is a mutation: send it as graphql.mutation (queries may be retried, mutations are not)"));
    }
    let params = params_object(&req.params, r#"GraphQL params must be an object {"variables": {...}, "operationName": "..."}"#)?;
    let mut body = Map::new();
    body.insert("query".into(), Value::String(req.target.clone()));
    for (k, v) in params {
        match k.as_str() {
            "variables" if v.is_object() || v.is_null() => {
                body.insert("variables".into(), v.clone());
            }
            "variables" => return Err(Error::rejected(format!("params.variables must be a JSON object, got a JSON {}", json_type(v)))),
            "operationName" | "operation_name" if v.is_string() || v.is_null() => {
                body.insert("operationName".into(), v.clone());
            }
            "operationName" | "operation_name" => return Err(Error::rejected("params.operationName must be a string")),
            other => {
                return Err(Error::rejected(format!("unknown GraphQL param {other:?}; use \"variables\" and \"operationName\""))
                    .with("param", other))
            }
        }
    }
    Ok(Value::Object(body))
}

/// Turns a GraphQL answer into data, or a Rejected error carrying messages, paths and partial data.
fn interpret(mut answer: Value, operation_name: Option<&str>) -> Result<(Value, Option<Value>)> {
    let Some(obj) = answer.as_object_mut() else {
        return Err(Error::protocol(format!(
            "the GraphQL endpoint answered a JSON {} instead of an object with data/errors",
            json_type(&answer)
        )));
    };
    let data = obj.remove("data").unwrap_or(Value::Null);
    let extensions = obj.remove("extensions");
    match obj.remove("errors") {
        Some(Value::Array(errors)) if !errors.is_empty() => {
            let list: Vec<Value> = errors.iter().map(|e| json!({"message": e.get("message").cloned().unwrap_or(Value::Null), "path": e.get("path").cloned().unwrap_or(Value::Null)})).collect();
            let messages: Vec<String> =
                list.iter().map(|e| e["message"].as_str().map(String::from).unwrap_or_else(|| e["message"].to_string())).collect();
            let mut err = Error::rejected(format!("GraphQL returned {} error(s): {}", list.len(), messages.join("; ")))
                .with("errors", Value::Array(list));
            if !data.is_null() {
                err = err.with("data", &data);
            }
            if let Some(name) = operation_name {
                err = err.with("operation_name", name);
            }
            Err(err)
        }
        None | Some(Value::Null) | Some(Value::Array(_)) => Ok((data, extensions)),
        Some(other) => Err(Error::protocol(format!("GraphQL errors must be an array, got a JSON {}", json_type(&other)))),
    }
}

impl GraphQlHandler {
    /// A handler named `name`, not yet initialized.
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        GraphQlHandler { http: HttpRestHandler::new(name.clone()), name }
    }
}

#[async_trait]
impl ProtocolHandler for GraphQlHandler {
    fn handler_type(&self) -> &str {
        "graphql"
    }

    async fn initialize(&self, config: ConnectionConfig) -> Result<()> {
        self.http.initialize(config).await
    }

    async fn shutdown(&self, timeout: Duration) -> Result<()> {
        self.http.shutdown(timeout).await
    }

    async fn execute(&self, req: ProtocolRequest, op: &OperationConfig) -> Result<ProtocolResponse> {
        if !GRAPHQL_OPERATIONS.contains(&req.operation.as_str()) {
            return Err(unknown_operation("graphql", &req.operation, &GRAPHQL_OPERATIONS));
        }
        let body = request_body(&req)?;
        let operation_name = body.get("operationName").and_then(|v| v.as_str()).map(String::from);
        let http_req = ProtocolRequest {
            operation: "POST".into(),
            target: String::new(),
            params: Value::Null,
            headers: req.headers,
            body: Some(onex_core::Body::Json(body)),
            correlation_id: req.correlation_id,
            traceparent: req.traceparent,
            idempotency_key: req.idempotency_key,
        };
        let resp = self.http.execute(http_req, op).await?;
        let (data, extensions) = interpret(resp.data, operation_name.as_deref())?;
        let mut metadata = std::collections::BTreeMap::new();
        if let Some(ext) = extensions {
            metadata.insert("extensions".to_string(), ext);
        }
        Ok(ProtocolResponse { status_code: resp.status_code, data, headers: resp.headers, duration: resp.duration, metadata })
    }

    fn describe(&self) -> Result<HandlerDescriptor> {
        let mut d = self.http.describe()?;
        d.handler_type = "graphql".into();
        d.name = self.name.clone();
        d.operations = GRAPHQL_OPERATIONS.map(String::from).to_vec();
        d.capabilities.push("partial_data".into());
        Ok(d)
    }

    async fn health_check(&self) -> Result<HealthStatus> {
        let started = Instant::now();
        let probe = ProtocolRequest::new("graphql.query", "{ __typename }");
        let op = OperationConfig { max_response_bytes: Some(64 * 1024), ..OperationConfig::default() };
        Ok(match self.execute(probe, &op).await {
            Ok(_) => HealthStatus::healthy(started.elapsed(), json!({"probe": "{ __typename }"})),
            Err(e) if e.kind() == onex_core::ErrorKind::InvalidState => return Err(e),
            Err(e) => HealthStatus::unhealthy(started.elapsed(), &e),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutation_detection() {
        assert!(is_mutation("mutation { a }"));
        assert!(is_mutation("  # comment\n mutation Pay($x: Int) { a }"));
        assert!(!is_mutation("query { mutation }"));
        assert!(!is_mutation("{ a }"));
        assert!(!is_mutation("mutationFoo"));
    }

    #[test]
    fn body_and_param_errors() {
        let req = ProtocolRequest::new("graphql.query", "query Q($id: ID) { user(id: $id) { name } }")
            .with_params(json!({"variables": {"id": 1}, "operationName": "Q"}));
        assert_eq!(request_body(&req).unwrap()["operationName"], "Q");
        assert!(request_body(&ProtocolRequest::new("graphql.query", "mutation { x }"))
            .unwrap_err()
            .to_string()
            .contains("graphql.mutation"));
        assert!(request_body(&ProtocolRequest::new("graphql.query", "{ a }").with_params(json!({"vars": {}})))
            .unwrap_err()
            .to_string()
            .contains("\"vars\""));
        assert!(request_body(&ProtocolRequest::new("graphql.query", "{ a }").with_params(json!({"variables": [1]}))).is_err());
        assert!(request_body(&ProtocolRequest::new("graphql.query", " ")).is_err());
    }

    #[test]
    fn errors_keep_messages_paths_and_partial_data() {
        let e = interpret(json!({"data": {"a": 1, "b": null}, "errors": [{"message": "b failed", "path": ["b"]}]}), Some("Q")).unwrap_err();
        assert_eq!(e.kind(), onex_core::ErrorKind::Rejected);
        assert!(e.to_string().contains("b failed"));
        let ctx = e.context().unwrap();
        assert_eq!(serde_json::from_str::<Value>(&ctx["data"]).unwrap(), json!({"a": 1, "b": null}));
        assert_eq!(serde_json::from_str::<Value>(&ctx["errors"]).unwrap(), json!([{"message": "b failed", "path": ["b"]}]));
        assert_eq!(interpret(json!({"data": {"a": 1}, "errors": []}), None).unwrap().0, json!({"a": 1}));
        assert_eq!(interpret(json!("x"), None).unwrap_err().kind(), onex_core::ErrorKind::Protocol);
    }
}
