//! Building buses from URLs, cached per (environment, group).

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use onex_core::{Error, EventBus, EventBusProvider, Result, DEFAULT_BUS_URL};
use parking_lot::Mutex;

use crate::bus::{BusConfig, TransportBus};
use crate::memory::MemoryTransport;
use crate::transport::Transport;

/// Reads the bus-level options every URL may carry: `partitions` (default partition count
/// of auto-created topics) and `auto_create_topics` (`true`/`false`).
pub fn bus_config_from_url(url: &url::Url) -> Result<BusConfig> {
    let mut config = BusConfig::default();
    for (k, v) in url.query_pairs() {
        match k.as_ref() {
            "partitions" => {
                config.default_partitions =
                    v.parse().ok().filter(|n| *n > 0).ok_or_else(|| Error::config(format!("partitions={v:?} must be a positive number")))?
            }
            "auto_create_topics" => {
                config.auto_create_topics =
                    v.parse().map_err(|_| Error::config(format!("auto_create_topics={v:?} must be true or false")))?
            }
            _ => {}
        }
    }
    Ok(config)
}

/// Parses a bus URL, with a message that says what is accepted.
///
/// A broker list (`kafka://a:9092,b:9092`) is not a URL authority; it parses as its first
/// host, and the kafka transport reads the whole list from the raw string.
pub fn parse_bus_url(raw: &str) -> Result<url::Url> {
    let first_host_only = match raw.split_once("://") {
        Some((scheme @ ("kafka" | "redpanda"), rest)) => {
            let end = rest.find(['/', '?']).unwrap_or(rest.len());
            let (authority, tail) = rest.split_at(end);
            authority.split_once(',').map(|(first, _)| format!("{scheme}://{first}{tail}"))
        }
        _ => None,
    };
    let url = url::Url::parse(first_host_only.as_deref().unwrap_or(raw)).map_err(|e| {
        Error::config(format!(
            "invalid bus URL {:?}: {e}; expected memory://, sqlite://PATH, kafka://HOST:PORT or redpanda://HOST:PORT",
            onex_core::sanitize::sanitize(raw)
        ))
    })?;
    Ok(url)
}

/// Opens the transport a URL names.
pub async fn open_transport(raw: &str) -> Result<Arc<dyn Transport>> {
    let url = parse_bus_url(raw)?;
    match url.scheme() {
        "memory" => Ok(Arc::new(MemoryTransport::from_url(&url)?)),
        #[cfg(feature = "sqlite")]
        "sqlite" => Ok(crate::sqlite::SqliteTransport::from_url(&url).await?),
        #[cfg(feature = "kafka")]
        "kafka" | "redpanda" => Ok(crate::kafka::KafkaTransport::from_url_str(raw).await?),
        other => Err(Error::config(format!(
            "unknown bus scheme {other:?} in {:?}; use memory://, sqlite://PATH, kafka://HOST:PORT[,HOST:PORT] or redpanda://HOST:PORT (compiled in: {})",
            onex_core::sanitize::sanitize(raw),
            compiled_schemes().join(", ")
        ))),
    }
}

fn compiled_schemes() -> Vec<&'static str> {
    #[allow(unused_mut)]
    let mut v = vec!["memory"];
    #[cfg(feature = "sqlite")]
    v.push("sqlite");
    #[cfg(feature = "kafka")]
    v.extend(["kafka", "redpanda"]);
    v
}

/// Opens a bus from a URL (bus options from its query).
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let bus = onex_bus::connect("memory://?partitions=8").await?;
/// assert_eq!(bus.config().default_partitions, 8);
/// assert!(onex_bus::connect("carrier-pigeon://x").await.is_err());
/// # Ok::<(), onex_core::Error>(()) }).unwrap();
/// ```
pub async fn connect(raw: &str) -> Result<Arc<TransportBus>> {
    let config = bus_config_from_url(&parse_bus_url(raw)?)?;
    connect_with(raw, config).await
}

/// Opens a bus from a URL with explicit settings.
pub async fn connect_with(raw: &str, config: BusConfig) -> Result<Arc<TransportBus>> {
    let transport = open_transport(raw).await?;
    Ok(Arc::new(TransportBus::with_config(transport, config)))
}

/// The [`EventBusProvider`]: one bus per (URL, environment, group), the default URL
/// when none is given.
#[derive(Debug)]
pub struct BusProvider {
    default_url: String,
    cache: tokio::sync::Mutex<HashMap<(String, String, String), Arc<TransportBus>>>,
    _guard: Mutex<()>,
}

impl Default for BusProvider {
    fn default() -> Self {
        Self::new(DEFAULT_BUS_URL)
    }
}

impl BusProvider {
    /// A provider whose default is `default_url`.
    pub fn new(default_url: impl Into<String>) -> Self {
        BusProvider { default_url: default_url.into(), cache: Default::default(), _guard: Mutex::new(()) }
    }

    /// The concrete bus (with its admin and stats).
    pub async fn transport_bus(&self, url: Option<&str>, environment: &str, group: &str) -> Result<Arc<TransportBus>> {
        let url = url.unwrap_or(&self.default_url).to_string();
        let key = (url.clone(), environment.to_string(), group.to_string());
        let mut cache = self.cache.lock().await;
        if let Some(bus) = cache.get(&key) {
            return Ok(bus.clone());
        }
        let bus = connect(&url).await?;
        cache.insert(key, bus.clone());
        Ok(bus)
    }
}

#[async_trait]
impl EventBusProvider for BusProvider {
    async fn bus(&self, url: Option<&str>, environment: &str, group: &str) -> Result<Arc<dyn EventBus>> {
        Ok(self.transport_bus(url, environment, group).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_lists_parse_with_their_options() {
        let url = parse_bus_url("kafka://a:9092,b:9093?partitions=8&client.id=x").unwrap();
        assert_eq!((url.scheme(), url.host_str(), url.port()), ("kafka", Some("a"), Some(9092)));
        assert_eq!(bus_config_from_url(&url).unwrap().default_partitions, 8);
        assert!(parse_bus_url("redpanda://a:1,b:2,c:3/").is_ok());
        let err = parse_bus_url("kafka://a:notaport").unwrap_err().to_string();
        assert!(err.contains("invalid bus URL"), "{err}");
    }
}
