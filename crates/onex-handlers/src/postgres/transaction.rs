//! `db.transaction`: a list of statements run all-or-nothing.
//!
//! `params` is either an array of statements or an object
//! `{"statements": [...], "isolation_level": "read_committed" | "repeatable_read" | "serializable",
//! "read_only": bool}`; each statement is `{"sql": "...", "params": [...]}`. A failing statement
//! rolls the whole transaction back; the error names its index (`statement_index`).

use onex_core::{Error, Result};
use serde::Deserialize;
use serde_json::Value;
use tokio_postgres::IsolationLevel;

/// One statement of a transaction.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TxStatement {
    pub(crate) sql: String,
    #[serde(default)]
    pub(crate) params: Value,
}

/// A parsed `db.transaction` request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TxSpec {
    pub(crate) statements: Vec<TxStatement>,
    #[serde(default)]
    pub(crate) isolation_level: Option<String>,
    #[serde(default)]
    pub(crate) read_only: bool,
}

impl TxSpec {
    /// Parses `params` (see the module docs).
    pub(crate) fn parse(params: &Value) -> Result<TxSpec> {
        let spec = match params {
            Value::Array(_) => {
                TxSpec { statements: serde_json::from_value(params.clone()).map_err(bad_spec)?, isolation_level: None, read_only: false }
            }
            Value::Object(_) => serde_json::from_value(params.clone()).map_err(bad_spec)?,
            _ => return Err(bad_spec("params must be a list of statements or an object with \"statements\"")),
        };
        if spec.statements.is_empty() {
            return Err(Error::rejected("db.transaction needs at least one statement"));
        }
        spec.isolation()?;
        Ok(spec)
    }

    /// The requested isolation level.
    pub(crate) fn isolation(&self) -> Result<Option<IsolationLevel>> {
        Ok(match self.isolation_level.as_deref().map(|s| s.to_ascii_lowercase().replace([' ', '-'], "_")) {
            None => None,
            Some(s) => Some(match s.as_str() {
                "read_uncommitted" => IsolationLevel::ReadUncommitted,
                "read_committed" => IsolationLevel::ReadCommitted,
                "repeatable_read" => IsolationLevel::RepeatableRead,
                "serializable" => IsolationLevel::Serializable,
                _ => {
                    return Err(Error::rejected(format!(
                        "isolation_level {:?} is not one of read_uncommitted, read_committed, repeatable_read, serializable",
                        self.isolation_level.as_deref().unwrap_or_default()
                    )))
                }
            }),
        })
    }
}

fn bad_spec(e: impl std::fmt::Display) -> Error {
    Error::rejected(format!(
        "invalid db.transaction params ({e}); expected [{{\"sql\": \"...\", \"params\": [...]}}, ...] or {{\"statements\": [...], \"isolation_level\": \"serializable\", \"read_only\": false}}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_both_forms_and_rejects_bad_ones() {
        let s = TxSpec::parse(&json!([{"sql": "select 1"}])).unwrap();
        assert_eq!(s.statements.len(), 1);
        let s = TxSpec::parse(
            &json!({"statements": [{"sql": "select $1::int", "params": [1]}], "isolation_level": "Repeatable Read", "read_only": true}),
        )
        .unwrap();
        assert!(s.read_only && matches!(s.isolation().unwrap(), Some(IsolationLevel::RepeatableRead)));
        assert!(TxSpec::parse(&json!([])).is_err());
        assert!(TxSpec::parse(&json!("select 1")).is_err());
        assert!(TxSpec::parse(&json!([{"query": "x"}])).unwrap_err().to_string().contains("expected"));
        assert!(TxSpec::parse(&json!({"statements": [{"sql": "x"}], "isolation_level": "chaos"}))
            .unwrap_err()
            .to_string()
            .contains("chaos"));
    }
}
