//! Rows as JSON objects.
//!
//! int2/int4/int8/oid and float4/float8 are JSON numbers (NaN and ±Infinity floats are
//! strings); numeric follows the rule in [`super::numeric`]; text-like types, enums, uuid and
//! time types are strings (date `YYYY-MM-DD`, time `HH:MM:SS[.f]`, timestamp
//! `YYYY-MM-DDTHH:MM:SS[.f]`, timestamptz RFC 3339 in UTC); json/jsonb are embedded as JSON;
//! bytea is base64 text; one-dimensional arrays are JSON arrays; NULL is null. Other types are
//! a [`Error::Decode`] naming the column and telling to cast it (`col::text`). When two
//! columns share a name, the later one wins: alias them.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, SecondsFormat, Utc};
use onex_core::{Error, Result};
use serde_json::{Map, Value};
use tokio_postgres::types::{FromSql, Kind, Type};
use tokio_postgres::Row;

use super::numeric;

type BoxError = Box<dyn std::error::Error + Sync + Send>;

/// One decoded cell and the size of its wire value (for the response-size limit).
pub(crate) struct JsonCell(pub(crate) Value, pub(crate) usize);

fn float(f: f64, display: String) -> Value {
    if f.is_nan() {
        return Value::String("NaN".into());
    }
    if f.is_infinite() {
        return Value::String(if f > 0.0 { "Infinity" } else { "-Infinity" }.into());
    }
    serde_json::Number::from_f64(display.parse().unwrap_or(f)).map(Value::Number).unwrap_or(Value::String(display))
}

impl<'a> FromSql<'a> for JsonCell {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> std::result::Result<Self, BoxError> {
        use base64::Engine as _;
        let v = match *ty {
            Type::BOOL => Value::Bool(bool::from_sql(ty, raw)?),
            Type::INT2 => Value::from(i16::from_sql(ty, raw)?),
            Type::INT4 => Value::from(i32::from_sql(ty, raw)?),
            Type::INT8 => Value::from(i64::from_sql(ty, raw)?),
            Type::OID => Value::from(u32::from_sql(ty, raw)?),
            Type::FLOAT4 => {
                let f = f32::from_sql(ty, raw)?;
                // Via the f32's own shortest text, so 0.1f32 reads 0.1, not 0.10000000149011612.
                float(f as f64, f.to_string())
            }
            Type::FLOAT8 => {
                let f = f64::from_sql(ty, raw)?;
                float(f, f.to_string())
            }
            Type::NUMERIC => numeric::to_json(&numeric::decode(raw)?),
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => Value::String(<&str>::from_sql(ty, raw)?.to_string()),
            Type::UUID => Value::String(uuid::Uuid::from_sql(ty, raw)?.to_string()),
            Type::DATE => Value::String(NaiveDate::from_sql(ty, raw)?.format("%Y-%m-%d").to_string()),
            Type::TIME => Value::String(NaiveTime::from_sql(ty, raw)?.format("%H:%M:%S%.f").to_string()),
            Type::TIMESTAMP => Value::String(NaiveDateTime::from_sql(ty, raw)?.format("%Y-%m-%dT%H:%M:%S%.f").to_string()),
            Type::TIMESTAMPTZ => Value::String(DateTime::<Utc>::from_sql(ty, raw)?.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
            Type::JSON | Type::JSONB => Value::from_sql(ty, raw)?,
            Type::BYTEA => Value::String(base64::engine::general_purpose::STANDARD.encode(<&[u8]>::from_sql(ty, raw)?)),
            _ => match ty.kind() {
                Kind::Array(_) => Value::Array(Vec::<JsonCell>::from_sql(ty, raw)?.into_iter().map(|c| c.0).collect()),
                Kind::Enum(_) => Value::String(std::str::from_utf8(raw)?.to_string()),
                Kind::Domain(inner) => JsonCell::from_sql(inner, raw)?.0,
                _ => return Err(format!("type {ty} is not supported as JSON; cast the column in SQL, e.g. col::text").into()),
            },
        };
        Ok(JsonCell(v, raw.len()))
    }

    fn from_sql_null(_: &Type) -> std::result::Result<Self, BoxError> {
        Ok(JsonCell(Value::Null, 0))
    }

    /// Support is decided per value in `from_sql`, which names the unsupported type.
    fn accepts(_: &Type) -> bool {
        true
    }
}

/// A row as a JSON object keyed by column name.
pub(crate) fn row_to_json(row: &Row) -> Result<Value> {
    row_to_json_sized(row).map(|(v, _)| v)
}

/// A row as a JSON object and its size on the wire (values only).
pub(crate) fn row_to_json_sized(row: &Row) -> Result<(Value, usize)> {
    let mut size = 0;
    let mut obj = Map::with_capacity(row.len());
    for (i, col) in row.columns().iter().enumerate() {
        let cell: JsonCell = row.try_get(i).map_err(|e| {
            let cause = std::error::Error::source(&e).map(|s| s.to_string()).unwrap_or_else(|| e.to_string());
            Error::decode(format!("column {:?} (type {}) cannot be read: {cause}", col.name(), col.type_())).with("column", col.name())
        })?;
        size += cell.1;
        obj.insert(col.name().to_string(), cell.0);
    }
    Ok((Value::Object(obj), size))
}
