//! `onex schema`: the schema registry from the command line — the embedded one in the bus's
//! sqlite file by default, a Confluent-compatible one with `--registry URL`.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Subcommand;
use onex_core::{CompatibilityMode, Error, Result, SchemaRegistry, SchemaType, VersionSpec, DEFAULT_BUS_URL};
use onex_schema::{ConfluentRegistryClient, SqliteSchemaRegistry};

/// `onex schema` actions.
#[derive(Debug, Subcommand)]
pub enum SchemaCommand {
    /// Register FILE (a JSON Schema) under SUBJECT after the compatibility check.
    Register {
        /// Subject, e.g. `orders-value`.
        subject: String,
        /// Schema file.
        file: PathBuf,
        /// Schema type (JSON; AVRO and PROTOBUF are not supported).
        #[arg(long, default_value = "JSON")]
        schema_type: String,
    },
    /// Show a version of a subject (default: latest).
    Get {
        /// Subject.
        subject: String,
        /// Version number or `latest`.
        version: Option<String>,
    },
    /// List subjects.
    List,
    /// List the versions of a subject.
    Versions {
        /// Subject.
        subject: String,
    },
    /// Check FILE against the subject under its compatibility mode, registering nothing.
    Check {
        /// Subject.
        subject: String,
        /// Schema file.
        file: PathBuf,
    },
    /// Validate a payload against the latest schema of a subject.
    Validate {
        /// Subject.
        subject: String,
        /// JSON payload.
        #[arg(long, conflicts_with = "file")]
        payload: Option<String>,
        /// File holding the JSON payload.
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Show or set the compatibility mode (global without SUBJECT).
    Config {
        /// Subject.
        subject: Option<String>,
        /// NONE, BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE.
        #[arg(long)]
        set: Option<String>,
    },
    /// Delete a subject or one version (soft; `--permanent` after a soft delete).
    Delete {
        /// Subject.
        subject: String,
        /// Only this version.
        #[arg(long)]
        version: Option<u32>,
        /// Permanent delete (after a soft one).
        #[arg(long)]
        permanent: bool,
    },
}

/// Opens the registry: remote when `registry` is given, else embedded in the sqlite bus file.
pub async fn open_registry(registry: Option<&str>, bus_url: Option<&str>) -> Result<Arc<dyn SchemaRegistry>> {
    if let Some(url) = registry {
        return Ok(Arc::new(ConfluentRegistryClient::new(url)?));
    }
    let bus = bus_url.unwrap_or(DEFAULT_BUS_URL);
    let url = onex_bus::provider::parse_bus_url(bus)?;
    if url.scheme() != "sqlite" {
        return Err(Error::config(format!(
            "the embedded schema registry lives in a sqlite bus file, and the bus is {}://; pass --registry URL for a remote (Confluent-compatible) registry",
            url.scheme()
        )));
    }
    let (path, _) = onex_bus::sqlite::SqliteConfig::from_url(&url)?;
    // Open the bus first: it creates the file (and `.onex/`) and checks it is an onex database.
    onex_bus::open_transport(bus).await?;
    Ok(Arc::new(SqliteSchemaRegistry::open(path).await?))
}

fn read(path: &PathBuf) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::config(format!("cannot read {}: {e}", path.display())))
}

fn parse_mode(s: &str) -> Result<CompatibilityMode> {
    serde_json::from_value(serde_json::Value::String(s.to_ascii_uppercase()))
        .map_err(|_| Error::config(format!("unknown compatibility mode {s:?}; use NONE, BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL or FULL_TRANSITIVE")))
}

fn parse_version(v: Option<&str>) -> Result<VersionSpec> {
    match v {
        None | Some("latest") => Ok(VersionSpec::Latest),
        Some(n) => n.parse().map(VersionSpec::Number).map_err(|_| Error::config(format!("version {n:?} must be a number or `latest`"))),
    }
}

fn emit(json: bool, value: serde_json::Value, text: impl FnOnce() -> String) {
    if json {
        println!("{value}");
    } else {
        println!("{}", text());
    }
}

/// Runs one `onex schema` action.
pub async fn run(registry: Arc<dyn SchemaRegistry>, cmd: SchemaCommand, json: bool) -> Result<()> {
    match cmd {
        SchemaCommand::Register { subject, file, schema_type } => {
            let info = registry.register(&subject, &read(&file)?, SchemaType::parse(&schema_type)?).await?;
            emit(json, serde_json::json!({"subject": info.subject, "version": info.version, "id": info.id}), || {
                format!("registered {} version {} (id {})", info.subject, info.version, info.id)
            });
        }
        SchemaCommand::Get { subject, version } => {
            let info = registry.get(&subject, parse_version(version.as_deref())?).await?;
            emit(json, serde_json::to_value(&info)?, || {
                format!("{} version {} (id {}, {:?})\n{}", info.subject, info.version, info.id, info.schema_type, info.schema)
            });
        }
        SchemaCommand::List => {
            let subjects = registry.subjects().await?;
            emit(json, serde_json::json!({"subjects": subjects}), || subjects.join("\n"));
        }
        SchemaCommand::Versions { subject } => {
            let versions = registry.versions(&subject).await?;
            emit(json, serde_json::json!({"subject": subject, "versions": versions}), || {
                versions.iter().map(u32::to_string).collect::<Vec<_>>().join("\n")
            });
        }
        SchemaCommand::Check { subject, file } => {
            let report = registry.check_compatibility(&subject, &read(&file)?, None).await?;
            emit(json, serde_json::to_value(&report)?, || {
                if report.compatible {
                    "compatible".to_string()
                } else {
                    format!("INCOMPATIBLE\n  {}", report.messages.join("\n  "))
                }
            });
            if !report.compatible {
                return Err(Error::rejected(format!("schema in {} is not compatible with {subject}", file.display())));
            }
        }
        SchemaCommand::Validate { subject, payload, file } => {
            let text = match (payload, file) {
                (Some(p), _) => p,
                (None, Some(f)) => read(&f)?,
                (None, None) => return Err(Error::config("pass --payload JSON or --file FILE")),
            };
            let value: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| Error::config(format!("payload is not valid JSON: {e}")))?;
            match registry.validate(&subject, &value).await {
                Ok(()) => emit(json, serde_json::json!({"valid": true}), || "valid".to_string()),
                Err(Error::Schema { violations, .. }) => {
                    emit(json, serde_json::json!({"valid": false, "violations": violations}), || {
                        format!("INVALID\n  {}", violations.iter().map(|v| v.to_string()).collect::<Vec<_>>().join("\n  "))
                    });
                    return Err(Error::schema(Some(subject), violations));
                }
                Err(e) => return Err(e),
            }
        }
        SchemaCommand::Config { subject, set } => {
            if let Some(mode) = set {
                registry.set_compatibility(subject.as_deref(), parse_mode(&mode)?).await?;
            }
            let mode = registry.get_compatibility(subject.as_deref()).await?;
            let scope = subject.clone().unwrap_or_else(|| "global".into());
            emit(json, serde_json::json!({"subject": subject, "compatibility": mode}), || format!("{scope}: {mode:?}"));
        }
        SchemaCommand::Delete { subject, version, permanent } => {
            let deleted = match version {
                Some(v) => vec![registry.delete_version(&subject, v, permanent).await?],
                None => registry.delete_subject(&subject, permanent).await?,
            };
            emit(json, serde_json::json!({"subject": subject, "deleted_versions": deleted, "permanent": permanent}), || {
                format!("deleted {subject} versions {deleted:?}{}", if permanent { " permanently" } else { "" })
            });
        }
    }
    Ok(())
}
