//! Connection settings and the pool built from a [`ConnectionConfig`].

use std::str::FromStr;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Timeouts};
use onex_core::{Auth, ConnectionConfig, Error, Result};
use tokio_postgres::config::Host;
use tokio_postgres::NoTls;

/// Where the pool points (never credentials) and how long to wait for a connection.
#[derive(Debug, Clone)]
pub(crate) struct PgEndpoint {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) database: String,
    pub(crate) connect_timeout: std::time::Duration,
    pub(crate) request_timeout: std::time::Duration,
}

impl PgEndpoint {
    /// `host:port/db`, for messages.
    pub(crate) fn label(&self) -> String {
        format!("{}:{}/{}", self.host, self.port, self.database)
    }
}

/// Builds the pool (no connection is opened yet) and the endpoint description.
pub(crate) fn build_pool(config: &ConnectionConfig) -> Result<(Pool, PgEndpoint)> {
    let url = config.resolved_url()?;
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(Error::config(format!(
            "the postgres handler needs a postgres:// URL, e.g. postgres://user@127.0.0.1:5432/db; got {:?}",
            onex_core::sanitize::sanitize(&url)
        )));
    }
    if config.tls.enabled {
        return Err(Error::config(
            "TLS for PostgreSQL is not built into this handler yet; connect over a trusted network or a local socket (tls.enabled=false)",
        ));
    }
    // The parser's message may quote the URL: never show it unsanitized.
    let mut pg = tokio_postgres::Config::from_str(&url)
        .map_err(|e| Error::config(format!("invalid PostgreSQL URL {:?}: {e}", onex_core::sanitize::sanitize(&url))))?;
    if let Auth::Basic { username, password } = &config.auth {
        if pg.get_user().is_none() {
            pg.user(username);
        }
        if pg.get_password().is_none() {
            pg.password(password.expose());
        }
    }
    if pg.get_user().is_none() {
        pg.user(std::env::var("USER").unwrap_or_else(|_| "postgres".into()));
    }
    pg.connect_timeout(config.timeouts.connect);
    if pg.get_application_name().is_none() {
        pg.application_name("onex");
    }
    let host = match pg.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    if pg.get_hosts().is_empty() {
        pg.host("localhost");
    }
    let port = pg.get_ports().first().copied().unwrap_or(5432);
    let database = pg.get_dbname().map(String::from).or_else(|| pg.get_user().map(String::from)).unwrap_or_default();
    if config.pool.max == 0 || config.pool.min > config.pool.max {
        return Err(Error::config(format!(
            "pool sizes are invalid (min {}, max {}): max must be ≥ 1 and ≥ min",
            config.pool.min, config.pool.max
        )));
    }
    let manager = Manager::from_config(pg, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
    let wait = Some(config.timeouts.connect);
    let pool = Pool::builder(manager)
        .max_size(config.pool.max)
        .runtime(Runtime::Tokio1)
        .timeouts(Timeouts { wait, create: wait, recycle: wait })
        .build()
        .map_err(|e| Error::config(format!("cannot build the PostgreSQL pool: {e}")))?;
    let endpoint = PgEndpoint { host, port, database, connect_timeout: config.timeouts.connect, request_timeout: config.timeouts.request };
    Ok((pool, endpoint))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(config: ConnectionConfig) -> String {
        build_pool(&config).map(|_| ()).unwrap_err().to_string()
    }

    #[test]
    fn bad_configs_are_explained_without_the_password() {
        assert!(err(ConnectionConfig::new("mysql://u:pw1@h/db")).contains("postgres://"));
        let mut c = ConnectionConfig::new("postgres://u:pw1@127.0.0.1/db");
        c.pool.max = 0;
        assert!(err(c.clone()).contains("max must be ≥ 1"));
        c.pool.max = 2;
        c.pool.min = 3;
        assert!(err(c.clone()).contains("min 3"));
        c.pool.min = 0;
        c.tls.enabled = true;
        assert!(err(c).contains("TLS"));
        let e = err(ConnectionConfig::new("postgres://u:pw1@127.0.0.1:notaport/db"));
        assert!(e.contains("invalid PostgreSQL URL") && !e.contains("pw1"), "{e}");
        let (_, ep) = build_pool(&ConnectionConfig::new("postgresql://u:pw1@db.local:6543/orders")).unwrap();
        assert_eq!((ep.host.as_str(), ep.port, ep.database.as_str()), ("db.local", 6543, "orders"));
        assert!(!format!("{ep:?}").contains("pw1"));
    }
}
