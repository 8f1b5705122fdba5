//! Binding JSON values to statement parameters, typed by the prepared statement.
//!
//! Each `$n` is converted by the type PostgreSQL inferred for it (`select $1::int` is int4):
//! integers take JSON integers in range, floats JSON numbers, numeric a number or a decimal
//! string, text a string, bool a boolean, uuid/date/time/timestamp/timestamptz strings
//! (RFC 3339 for timestamptz), json/jsonb any JSON value, bytea base64 text, arrays JSON
//! arrays of their element type; JSON null is SQL NULL everywhere. Anything else is
//! [`Error::Rejected`] naming the parameter, its type and the value's JSON type. Values are
//! sent as bound parameters, never spliced into SQL text.

use bytes::BytesMut;
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use onex_core::{Error, Result};
use serde_json::Value;
use tokio_postgres::types::{IsNull, Kind, ToSql, Type};

use super::numeric;
use crate::common::json_type;

/// A parameter value already converted for its PostgreSQL type.
#[derive(Debug)]
pub(crate) enum SqlParam {
    Null,
    Bool(bool),
    I16(i16),
    I32(i32),
    I64(i64),
    Oid(u32),
    F32(f32),
    F64(f64),
    /// Binary numeric, already encoded.
    Numeric(Vec<u8>),
    Text(String),
    Uuid(uuid::Uuid),
    Date(NaiveDate),
    Time(NaiveTime),
    Timestamp(NaiveDateTime),
    TimestampTz(DateTime<Utc>),
    Json(Value),
    Bytea(Vec<u8>),
    Array(Vec<SqlParam>),
}

impl ToSql for SqlParam {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            SqlParam::Null => Ok(IsNull::Yes),
            SqlParam::Bool(v) => v.to_sql(ty, out),
            SqlParam::I16(v) => v.to_sql(ty, out),
            SqlParam::I32(v) => v.to_sql(ty, out),
            SqlParam::I64(v) => v.to_sql(ty, out),
            SqlParam::Oid(v) => v.to_sql(ty, out),
            SqlParam::F32(v) => v.to_sql(ty, out),
            SqlParam::F64(v) => v.to_sql(ty, out),
            SqlParam::Numeric(bytes) => {
                out.extend_from_slice(bytes);
                Ok(IsNull::No)
            }
            SqlParam::Text(v) => v.to_sql(ty, out),
            SqlParam::Uuid(v) => v.to_sql(ty, out),
            SqlParam::Date(v) => v.to_sql(ty, out),
            SqlParam::Time(v) => v.to_sql(ty, out),
            SqlParam::Timestamp(v) => v.to_sql(ty, out),
            SqlParam::TimestampTz(v) => v.to_sql(ty, out),
            SqlParam::Json(v) => v.to_sql(ty, out),
            SqlParam::Bytea(v) => v.to_sql(ty, out),
            SqlParam::Array(items) => items.to_sql(ty, out),
        }
    }

    /// Every value was built for the statement's own parameter type by [`bind`].
    fn accepts(_: &Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}

/// Converts the JSON parameters of one statement (`params` is an array or null).
pub(crate) fn bind_all(params: &Value, types: &[Type]) -> Result<Vec<SqlParam>> {
    let values: &[Value] = match params {
        Value::Null => &[],
        Value::Array(items) => items,
        other => {
            return Err(Error::rejected(format!(
                "SQL params must be a JSON array of positional parameters ($1, $2, …), got a JSON {}",
                json_type(other)
            )))
        }
    };
    if values.len() != types.len() {
        return Err(Error::rejected(format!("the statement has {} parameter(s) but {} value(s) were given", types.len(), values.len()))
            .with("expected", types.len())
            .with("given", values.len()));
    }
    values.iter().zip(types).enumerate().map(|(i, (v, ty))| bind(v, ty, i + 1)).collect()
}

fn mismatch(n: usize, ty: &Type, expected: &str, v: &Value) -> Error {
    let shown = match v {
        Value::String(s) if s.len() > 64 => format!("a JSON string of {} bytes", s.len()),
        Value::Object(_) | Value::Array(_) => format!("a JSON {}", json_type(v)),
        other => format!("the JSON {} {other}", json_type(other)),
    };
    Error::rejected(format!("parameter ${n} has PostgreSQL type {ty} and needs {expected}; got {shown}"))
        .with("param", format!("${n}"))
        .with("pg_type", ty)
}

/// Converts one JSON value for parameter `$n` of type `ty`.
pub(crate) fn bind(v: &Value, ty: &Type, n: usize) -> Result<SqlParam> {
    if v.is_null() {
        return Ok(SqlParam::Null);
    }
    let int = |min: i64, max: i64| v.as_i64().filter(|i| (min..=max).contains(i));
    let text = || v.as_str();
    Ok(match *ty {
        Type::BOOL => SqlParam::Bool(v.as_bool().ok_or_else(|| mismatch(n, ty, "a JSON boolean", v))?),
        Type::INT2 => {
            SqlParam::I16(int(i16::MIN as i64, i16::MAX as i64).ok_or_else(|| mismatch(n, ty, "an integer from -32768 to 32767", v))? as i16)
        }
        Type::INT4 => SqlParam::I32(int(i32::MIN as i64, i32::MAX as i64).ok_or_else(|| mismatch(n, ty, "a 32-bit integer", v))? as i32),
        Type::INT8 => SqlParam::I64(v.as_i64().ok_or_else(|| mismatch(n, ty, "a 64-bit integer", v))?),
        Type::OID => SqlParam::Oid(int(0, u32::MAX as i64).ok_or_else(|| mismatch(n, ty, "an unsigned 32-bit integer", v))? as u32),
        Type::FLOAT4 => SqlParam::F32(v.as_f64().ok_or_else(|| mismatch(n, ty, "a JSON number", v))? as f32),
        Type::FLOAT8 => SqlParam::F64(v.as_f64().ok_or_else(|| mismatch(n, ty, "a JSON number", v))?),
        Type::NUMERIC => {
            let text = match v {
                Value::Number(num) => num.to_string(),
                Value::String(s) => s.clone(),
                _ => return Err(mismatch(n, ty, "a JSON number or a decimal string", v)),
            };
            SqlParam::Numeric(numeric::encode(&text).ok_or_else(|| mismatch(n, ty, "a decimal such as \"12.50\"", v))?)
        }
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
            SqlParam::Text(text().ok_or_else(|| mismatch(n, ty, "a JSON string", v))?.to_string())
        }
        Type::UUID => {
            SqlParam::Uuid(text().and_then(|s| uuid::Uuid::parse_str(s).ok()).ok_or_else(|| mismatch(n, ty, "a UUID string", v))?)
        }
        Type::DATE => SqlParam::Date(
            text()
                .and_then(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
                .ok_or_else(|| mismatch(n, ty, "a date \"YYYY-MM-DD\"", v))?,
        ),
        Type::TIME => SqlParam::Time(
            text()
                .and_then(|s| NaiveTime::parse_from_str(s, "%H:%M:%S%.f").ok())
                .ok_or_else(|| mismatch(n, ty, "a time \"HH:MM:SS[.ffffff]\"", v))?,
        ),
        Type::TIMESTAMP => SqlParam::Timestamp(
            text()
                .and_then(|s| {
                    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
                        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f"))
                        .ok()
                })
                .ok_or_else(|| mismatch(n, ty, "a timestamp \"YYYY-MM-DDTHH:MM:SS[.ffffff]\"", v))?,
        ),
        Type::TIMESTAMPTZ => SqlParam::TimestampTz(
            text()
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                .map(|d| d.with_timezone(&Utc))
                .ok_or_else(|| mismatch(n, ty, "an RFC 3339 timestamp with offset, e.g. \"2024-05-01T12:00:00Z\"", v))?,
        ),
        Type::JSON | Type::JSONB => SqlParam::Json(v.clone()),
        Type::BYTEA => {
            use base64::Engine as _;
            SqlParam::Bytea(
                text()
                    .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
                    .ok_or_else(|| mismatch(n, ty, "base64 text", v))?,
            )
        }
        _ => match ty.kind() {
            Kind::Array(member) => {
                let items = v.as_array().ok_or_else(|| mismatch(n, ty, "a JSON array", v))?;
                SqlParam::Array(items.iter().map(|item| bind(item, member, n)).collect::<Result<_>>()?)
            }
            Kind::Enum(_) => SqlParam::Text(text().ok_or_else(|| mismatch(n, ty, "a JSON string (enum label)", v))?.to_string()),
            Kind::Domain(inner) => bind(v, inner, n)?,
            _ => {
                return Err(Error::rejected(format!(
                    "parameter ${n} has PostgreSQL type {ty}, which cannot be bound from JSON; cast it in SQL, e.g. ${n}::text"
                ))
                .with("param", format!("${n}"))
                .with("pg_type", ty))
            }
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn mismatches_name_the_parameter_type_and_value() {
        let e = bind(&json!("abc"), &Type::INT4, 2).unwrap_err().to_string();
        assert!(e.contains("$2") && e.contains("int4") && e.contains("\"abc\""), "{e}");
        let e = bind(&json!(70000), &Type::INT2, 1).unwrap_err().to_string();
        assert!(e.contains("-32768"), "{e}");
        assert!(bind(&json!("x"), &Type::UUID, 1).is_err());
        assert!(bind(&json!(["a", 1]), &Type::TEXT_ARRAY, 1).is_err());
        assert!(bind(&json!("2024-13-01"), &Type::DATE, 1).is_err());
        let e = bind(&json!("1.2.3"), &Type::NUMERIC, 1).unwrap_err().to_string();
        assert!(e.contains("decimal"), "{e}");
        let e = bind(&json!(1), &Type::POINT, 3).unwrap_err().to_string();
        assert!(e.contains("$3::text"), "{e}");
        let e = bind_all(&json!({"a": 1}), &[]).unwrap_err().to_string();
        assert!(e.contains("JSON array"), "{e}");
        let e = bind_all(&json!([1, 2]), &[Type::INT4]).unwrap_err().to_string();
        assert!(e.contains("1 parameter(s) but 2"), "{e}");
    }

    #[test]
    fn null_binds_to_any_type() {
        assert!(matches!(bind(&Value::Null, &Type::POINT, 1).unwrap(), SqlParam::Null));
    }
}
