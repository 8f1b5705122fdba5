//! The registry's operations as synchronous sqlite transactions (run on a blocking thread).

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use onex_core::{CompatibilityMode, CompatibilityReport, Error, Result, SchemaInfo, SchemaType, VersionSpec};

use super::tables::sql_error;
use crate::canonical::canonicalize;
use crate::compat::{check_compatibility, PreviousVersion};
use crate::errors::{codes, mode_name, parse_mode, subject_not_found, validate_subject, version_not_found};
use crate::validation::{ensure_supported, ValidatorCache};

/// The `schema_config` row holding the global mode.
const GLOBAL: &str = "";

struct Row {
    version: u32,
    id: u32,
    schema_type: SchemaType,
    canonical: String,
    schema: String,
    deleted: bool,
}

impl Row {
    fn info(&self, subject: &str) -> SchemaInfo {
        SchemaInfo {
            subject: subject.to_string(),
            version: self.version,
            id: self.id,
            schema_type: self.schema_type,
            schema: self.schema.clone(),
        }
    }
}

fn type_name(t: SchemaType) -> &'static str {
    match t {
        SchemaType::Json => "JSON",
        SchemaType::Avro => "AVRO",
        SchemaType::Protobuf => "PROTOBUF",
    }
}

/// Every version row of a subject (live and soft-deleted), oldest first.
fn rows(conn: &Connection, subject: &str) -> Result<Vec<Row>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT v.version, v.schema_id, s.schema_type, s.canonical, s.schema, v.deleted
             FROM schema_versions v JOIN schema_schemas s ON s.id = v.schema_id
             WHERE v.subject = ?1 ORDER BY v.version",
        )
        .map_err(|e| sql_error("reading versions", e))?;
    let rows = stmt
        .query_map([subject], |r| {
            let schema_type: String = r.get(2)?;
            Ok(Row {
                version: r.get(0)?,
                id: r.get(1)?,
                schema_type: SchemaType::parse(&schema_type).unwrap_or(SchemaType::Json),
                canonical: r.get(3)?,
                schema: r.get(4)?,
                deleted: r.get(5)?,
            })
        })
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
        .map_err(|e| sql_error("reading versions", e))?;
    Ok(rows)
}

fn live(rows: Vec<Row>) -> Vec<Row> {
    rows.into_iter().filter(|r| !r.deleted).collect()
}

fn previous(rows: &[Row]) -> Vec<PreviousVersion> {
    rows.iter().map(|r| PreviousVersion { version: r.version, schema: r.schema.clone() }).collect()
}

/// The live version `spec` names, or NotFound with the Confluent code.
fn find(conn: &Connection, subject: &str, spec: VersionSpec) -> Result<Row> {
    let all = rows(conn, subject)?;
    if all.is_empty() {
        return Err(subject_not_found(subject));
    }
    let found = match spec {
        VersionSpec::Latest => live(all).pop(),
        VersionSpec::Number(v) => all.into_iter().find(|r| r.version == v && !r.deleted),
    };
    found.ok_or_else(|| match spec {
        VersionSpec::Latest => subject_not_found(subject),
        VersionSpec::Number(v) => version_not_found(subject, v),
    })
}

pub(crate) fn effective_mode(conn: &Connection, subject: Option<&str>) -> Result<CompatibilityMode> {
    let read = |key: &str| -> Result<Option<String>> {
        conn.query_row("SELECT compatibility FROM schema_config WHERE subject = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(|e| sql_error("reading compatibility config", e))
    };
    let stored = match subject {
        Some(s) => match read(s)? {
            Some(m) => Some(m),
            None => read(GLOBAL)?,
        },
        None => read(GLOBAL)?,
    };
    stored.map_or(Ok(CompatibilityMode::default()), |m| parse_mode(&m))
}

pub(crate) fn register(
    conn: &mut Connection,
    cache: &ValidatorCache,
    subject: &str,
    schema: &str,
    schema_type: SchemaType,
) -> Result<SchemaInfo> {
    validate_subject(subject)?;
    ensure_supported(schema_type)?;
    cache.get_or_compile(schema, schema_type)?;
    let (_, canonical) = canonicalize(schema)?;
    // IMMEDIATE: take the write lock before reading, so two registrations cannot both pass the
    // compatibility check against the same latest version.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| sql_error("starting a transaction", e))?;
    let all = rows(&tx, subject)?;
    let next_version = all.iter().map(|r| r.version).max().unwrap_or(0) + 1;
    let live_rows = live(all);
    if let Some(same) = live_rows.iter().find(|r| r.canonical == canonical && r.schema_type == schema_type) {
        return Ok(same.info(subject));
    }
    let mode = effective_mode(&tx, Some(subject))?;
    let report = check_compatibility(mode, schema, &previous(&live_rows))?;
    if !report.compatible {
        return Err(Error::rejected(format!(
            "schema is incompatible with subject {subject:?} under {}: {}; nothing was registered",
            mode_name(mode),
            report.messages.join("; ")
        ))
        .with("subject", subject)
        .with("compatibility", mode_name(mode))
        .with("error_code", codes::INCOMPATIBLE));
    }
    let existing: Option<(u32, String)> = tx
        .query_row(
            "SELECT id, schema FROM schema_schemas WHERE schema_type = ?1 AND canonical = ?2",
            params![type_name(schema_type), canonical],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(|e| sql_error("looking up the schema id", e))?;
    let (id, stored_text) = match existing {
        Some(found) => found,
        None => {
            tx.execute(
                "INSERT INTO schema_schemas (schema_type, canonical, schema) VALUES (?1, ?2, ?3)",
                params![type_name(schema_type), canonical, schema],
            )
            .map_err(|e| sql_error("storing the schema", e))?;
            (tx.last_insert_rowid() as u32, schema.to_string())
        }
    };
    tx.execute("INSERT INTO schema_versions (subject, version, schema_id) VALUES (?1, ?2, ?3)", params![subject, next_version, id])
        .map_err(|e| sql_error("storing the version", e))?;
    tx.commit().map_err(|e| sql_error("committing the registration", e))?;
    tracing::info!(subject, version = next_version, id, compatibility = mode_name(mode), "schema registered");
    Ok(SchemaInfo { subject: subject.to_string(), version: next_version, id, schema_type, schema: stored_text })
}

pub(crate) fn get(conn: &Connection, subject: &str, spec: VersionSpec) -> Result<SchemaInfo> {
    Ok(find(conn, subject, spec)?.info(subject))
}

pub(crate) fn get_by_id(conn: &Connection, id: u32) -> Result<SchemaInfo> {
    conn.query_row(
        "SELECT v.subject, v.version, s.schema_type, s.schema
         FROM schema_versions v JOIN schema_schemas s ON s.id = v.schema_id
         WHERE s.id = ?1 ORDER BY v.deleted, v.subject, v.version LIMIT 1",
        [id],
        |r| {
            let schema_type: String = r.get(2)?;
            Ok(SchemaInfo {
                subject: r.get(0)?,
                version: r.get(1)?,
                id,
                schema_type: SchemaType::parse(&schema_type).unwrap_or(SchemaType::Json),
                schema: r.get(3)?,
            })
        },
    )
    .optional()
    .map_err(|e| sql_error("reading a schema by id", e))?
    .ok_or_else(|| {
        Error::not_found(format!("no schema with id {id}; list subjects and versions to find ids"))
            .with("id", id)
            .with("error_code", codes::SCHEMA_NOT_FOUND)
    })
}

pub(crate) fn subjects(conn: &Connection) -> Result<Vec<String>> {
    let mut stmt = conn
        .prepare_cached("SELECT DISTINCT subject FROM schema_versions WHERE deleted = 0 ORDER BY subject")
        .map_err(|e| sql_error("listing subjects", e))?;
    let subjects = stmt
        .query_map([], |r| r.get(0))
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<String>>>())
        .map_err(|e| sql_error("listing subjects", e))?;
    Ok(subjects)
}

pub(crate) fn versions(conn: &Connection, subject: &str) -> Result<Vec<u32>> {
    let versions: Vec<u32> = live(rows(conn, subject)?).iter().map(|r| r.version).collect();
    if versions.is_empty() {
        return Err(subject_not_found(subject));
    }
    Ok(versions)
}

pub(crate) fn check(conn: &Connection, subject: &str, schema: &str, spec: Option<VersionSpec>) -> Result<CompatibilityReport> {
    validate_subject(subject)?;
    let mode = effective_mode(conn, Some(subject))?;
    let against = match spec {
        Some(spec) => vec![find(conn, subject, spec)?],
        None => live(rows(conn, subject)?),
    };
    check_compatibility(mode, schema, &previous(&against))
}

pub(crate) fn set_mode(conn: &Connection, subject: Option<&str>, mode: CompatibilityMode) -> Result<()> {
    if let Some(s) = subject {
        validate_subject(s)?;
    }
    conn.execute(
        "INSERT INTO schema_config (subject, compatibility) VALUES (?1, ?2) ON CONFLICT(subject) DO UPDATE SET compatibility = excluded.compatibility",
        params![subject.unwrap_or(GLOBAL), mode_name(mode)],
    )
    .map_err(|e| sql_error("storing compatibility config", e))?;
    Ok(())
}

pub(crate) fn delete_subject(conn: &mut Connection, subject: &str, permanent: bool) -> Result<Vec<u32>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| sql_error("starting a transaction", e))?;
    let all = rows(&tx, subject)?;
    if all.is_empty() {
        return Err(subject_not_found(subject));
    }
    let live_versions: Vec<u32> = all.iter().filter(|r| !r.deleted).map(|r| r.version).collect();
    let deleted = if permanent {
        if !live_versions.is_empty() {
            return Err(Error::rejected(format!(
                "subject {subject:?} has live versions {live_versions:?}: soft-delete it first (delete without permanent), then delete it permanently"
            ))
            .with("subject", subject)
            .with("error_code", codes::SUBJECT_NOT_SOFT_DELETED));
        }
        tx.execute("DELETE FROM schema_versions WHERE subject = ?1", [subject]).map_err(|e| sql_error("deleting the subject", e))?;
        tx.execute("DELETE FROM schema_config WHERE subject = ?1", [subject]).map_err(|e| sql_error("deleting the subject's config", e))?;
        all.iter().map(|r| r.version).collect()
    } else {
        if live_versions.is_empty() {
            return Err(Error::not_found(format!(
                "subject {subject:?} was already soft-deleted; delete it with permanent=true to remove it for good"
            ))
            .with("subject", subject)
            .with("error_code", codes::SUBJECT_SOFT_DELETED));
        }
        tx.execute("UPDATE schema_versions SET deleted = 1 WHERE subject = ?1", [subject])
            .map_err(|e| sql_error("soft-deleting the subject", e))?;
        live_versions
    };
    tx.commit().map_err(|e| sql_error("committing the delete", e))?;
    Ok(deleted)
}

pub(crate) fn delete_version(conn: &mut Connection, subject: &str, version: u32, permanent: bool) -> Result<u32> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| sql_error("starting a transaction", e))?;
    let all = rows(&tx, subject)?;
    if all.is_empty() {
        return Err(subject_not_found(subject));
    }
    let Some(row) = all.iter().find(|r| r.version == version) else {
        return Err(version_not_found(subject, version));
    };
    if permanent {
        if !row.deleted {
            return Err(Error::rejected(format!(
                "version {version} of subject {subject:?} is live: soft-delete it first (delete without permanent), then delete it permanently"
            ))
            .with("subject", subject)
            .with("version", version)
            .with("error_code", codes::VERSION_NOT_SOFT_DELETED));
        }
        tx.execute("DELETE FROM schema_versions WHERE subject = ?1 AND version = ?2", params![subject, version])
            .map_err(|e| sql_error("deleting the version", e))?;
    } else {
        if row.deleted {
            return Err(Error::not_found(format!(
                "version {version} of subject {subject:?} was already soft-deleted; delete it with permanent=true to remove it for good"
            ))
            .with("subject", subject)
            .with("version", version)
            .with("error_code", codes::VERSION_SOFT_DELETED));
        }
        tx.execute("UPDATE schema_versions SET deleted = 1 WHERE subject = ?1 AND version = ?2", params![subject, version])
            .map_err(|e| sql_error("soft-deleting the version", e))?;
    }
    tx.commit().map_err(|e| sql_error("committing the delete", e))?;
    Ok(version)
}
