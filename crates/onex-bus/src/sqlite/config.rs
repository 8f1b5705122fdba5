//! Settings of the sqlite transport and how they are read from `sqlite://PATH?opt=value`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use onex_core::{Error, Result};

/// The path of the default bus URL (`sqlite://.onex/onex.db`): the one path whose missing
/// parent directory is created on open.
pub const DEFAULT_PATH: &str = ".onex/onex.db";

/// How hard a commit waits for the disk (`sync=normal|full`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncMode {
    /// `PRAGMA synchronous=NORMAL` in WAL mode: a commit is in the WAL (the OS page cache)
    /// before `publish` returns, so it survives a crash or `kill -9` of the process; the WAL
    /// is fsynced at checkpoints, so a power loss or OS crash may lose the last commits.
    #[default]
    Normal,
    /// `PRAGMA synchronous=FULL`: every commit fsyncs the WAL before `publish` returns, so an
    /// acknowledged publish also survives power loss. Slower (one fsync per group commit).
    Full,
}

impl SyncMode {
    /// `normal` or `full`.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncMode::Normal => "normal",
            SyncMode::Full => "full",
        }
    }

    pub(crate) fn pragma(self) -> &'static str {
        match self {
            SyncMode::Normal => "NORMAL",
            SyncMode::Full => "FULL",
        }
    }
}

/// Settings of a [`super::SqliteTransport`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteConfig {
    /// Durability of an acknowledged publish.
    pub sync: SyncMode,
    /// Largest record (key + value + headers), default 1 MiB.
    pub max_message_bytes: usize,
    /// Default age limit of records of new topics (`None` = keep).
    pub retention_ms: Option<u64>,
    /// Default record count limit per partition of new topics (`None` = keep).
    pub retention_records: Option<u64>,
    /// Default byte limit per partition of new topics (`None` = keep).
    pub retention_bytes: Option<u64>,
    /// How long a group member's partition leases live without a heartbeat (default 10 s).
    /// Heartbeats renew them every third of it.
    pub lease_ttl: Duration,
    /// How often the retention pass runs (default 5 s).
    pub retention_interval: Duration,
}

impl Default for SqliteConfig {
    fn default() -> Self {
        SqliteConfig {
            sync: SyncMode::Normal,
            max_message_bytes: 1024 * 1024,
            retention_ms: None,
            retention_records: None,
            retention_bytes: None,
            lease_ttl: Duration::from_secs(10),
            retention_interval: Duration::from_secs(5),
        }
    }
}

const KNOWN: &str =
    "sync, max_message_bytes, retention_ms, retention_records, retention_bytes, lease_ttl_ms, partitions, auto_create_topics";

impl SqliteConfig {
    /// Reads `sqlite://PATH?options` into a path and settings.
    ///
    /// ```
    /// use onex_bus::sqlite::{SqliteConfig, SyncMode};
    /// let url = url::Url::parse("sqlite:///var/lib/app/bus.db?sync=full&lease_ttl_ms=2000").unwrap();
    /// let (path, config) = SqliteConfig::from_url(&url)?;
    /// assert_eq!(path, std::path::PathBuf::from("/var/lib/app/bus.db"));
    /// assert_eq!(config.sync, SyncMode::Full);
    /// assert_eq!(config.lease_ttl, std::time::Duration::from_secs(2));
    /// # Ok::<(), onex_core::Error>(())
    /// ```
    pub fn from_url(url: &url::Url) -> Result<(PathBuf, SqliteConfig)> {
        if url.scheme() != "sqlite" {
            return Err(Error::config(format!("expected a sqlite:// URL, got scheme {:?}", url.scheme())));
        }
        let path = path_of(url)?;
        let mut config = SqliteConfig::default();
        for (k, v) in url.query_pairs() {
            match k.as_ref() {
                "sync" => {
                    config.sync = match v.as_ref() {
                        "normal" => SyncMode::Normal,
                        "full" => SyncMode::Full,
                        other => return Err(Error::config(format!("sqlite:// option sync={other:?} is not valid; use sync=normal (survives a process crash) or sync=full (also survives power loss)"))),
                    }
                }
                "max_message_bytes" => {
                    let n: usize = positive(&k, &v)?;
                    config.max_message_bytes = n;
                }
                "retention_ms" => config.retention_ms = Some(positive(&k, &v)?),
                "retention_records" => config.retention_records = Some(positive(&k, &v)?),
                "retention_bytes" => config.retention_bytes = Some(positive(&k, &v)?),
                "lease_ttl_ms" => {
                    let ms: u64 = positive(&k, &v)?;
                    if ms < 300 {
                        return Err(Error::config(format!("sqlite:// option lease_ttl_ms={ms} is too short; use at least 300 (heartbeats run every third of it)")));
                    }
                    config.lease_ttl = Duration::from_millis(ms);
                }
                // Bus-level options, read by the provider.
                "partitions" | "auto_create_topics" => {}
                other => return Err(Error::config(format!("unknown sqlite:// option {other:?}; known options: {KNOWN}"))),
            }
        }
        Ok((path, config))
    }
}

fn positive<T: std::str::FromStr + PartialOrd + Default>(k: &str, v: &str) -> Result<T> {
    v.parse::<T>()
        .ok()
        .filter(|n| *n > T::default())
        .ok_or_else(|| Error::config(format!("sqlite:// option {k}={v:?} must be a positive whole number")))
}

/// The file path of a `sqlite://` URL: `sqlite://rel/path.db` is relative to the working
/// directory, `sqlite:///abs/path.db` is absolute.
fn path_of(url: &url::Url) -> Result<PathBuf> {
    // Read the path from the text: a relative path's first segment is what `url` calls the
    // host, which it would otherwise normalise.
    let raw = url.as_str();
    let rest = raw.strip_prefix("sqlite://").unwrap_or(raw);
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    let encoded = &rest[..end];
    let decoded = percent_decode(encoded)?;
    if decoded.is_empty() || decoded.ends_with('/') {
        return Err(Error::config(format!(
            "sqlite:// URL {:?} names no file; use sqlite://relative/path.db or sqlite:///absolute/path.db",
            onex_core::sanitize::sanitize(raw)
        )));
    }
    Ok(PathBuf::from(decoded))
}

fn percent_decode(s: &str) -> Result<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(b) = hex {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).map_err(|_| Error::config(format!("sqlite:// path {s:?} is not valid UTF-8 after percent-decoding")))
}

/// Whether `path` is the default database path, whose directory may be created.
pub(crate) fn is_default_path(path: &Path) -> bool {
    path == Path::new(DEFAULT_PATH)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<(PathBuf, SqliteConfig)> {
        SqliteConfig::from_url(&url::Url::parse(s).unwrap())
    }

    #[test]
    fn paths_relative_and_absolute() {
        assert_eq!(parse("sqlite://.onex/onex.db").unwrap().0, PathBuf::from(".onex/onex.db"));
        assert_eq!(parse("sqlite://bus.db").unwrap().0, PathBuf::from("bus.db"));
        assert_eq!(parse("sqlite://Data/Bus.db").unwrap().0, PathBuf::from("Data/Bus.db"), "case kept");
        assert_eq!(parse("sqlite:///tmp/x/bus.db?sync=full").unwrap().0, PathBuf::from("/tmp/x/bus.db"));
        assert_eq!(parse("sqlite:///tmp/a%20b.db").unwrap().0, PathBuf::from("/tmp/a b.db"));
        assert!(is_default_path(&parse(onex_core::DEFAULT_BUS_URL).unwrap().0));
    }

    #[test]
    fn options_are_read_and_defaults_hold() {
        let (_, c) = parse("sqlite://x.db").unwrap();
        assert_eq!(c, SqliteConfig::default());
        let (_, c) = parse("sqlite://x.db?sync=full&max_message_bytes=10&retention_ms=5&retention_records=6&retention_bytes=7&lease_ttl_ms=2000&partitions=8&auto_create_topics=false").unwrap();
        assert_eq!(c.sync, SyncMode::Full);
        assert_eq!((c.max_message_bytes, c.retention_ms, c.retention_records, c.retention_bytes), (10, Some(5), Some(6), Some(7)));
        assert_eq!(c.lease_ttl, Duration::from_secs(2));
    }

    #[test]
    fn bad_options_say_what_is_accepted() {
        let e = parse("sqlite://x.db?synch=full").unwrap_err();
        assert!(e.to_string().contains("unknown sqlite:// option \"synch\"") && e.to_string().contains("lease_ttl_ms"), "{e}");
        let e = parse("sqlite://x.db?sync=always").unwrap_err();
        assert!(e.to_string().contains("sync=\"always\"") && e.to_string().contains("sync=full"), "{e}");
        let e = parse("sqlite://x.db?max_message_bytes=-1").unwrap_err();
        assert!(e.to_string().contains("positive whole number"), "{e}");
        let e = parse("sqlite://x.db?max_message_bytes=0").unwrap_err();
        assert!(e.to_string().contains("max_message_bytes=\"0\""), "{e}");
        let e = parse("sqlite://x.db?lease_ttl_ms=10").unwrap_err();
        assert!(e.to_string().contains("too short"), "{e}");
        let e = parse("sqlite:///tmp/dir/").unwrap_err();
        assert!(e.to_string().contains("names no file"), "{e}");
        for e in [parse("sqlite://x.db?synch=full").unwrap_err(), parse("sqlite:///").unwrap_err()] {
            assert_eq!(e.kind(), onex_core::ErrorKind::Config);
        }
    }
}
