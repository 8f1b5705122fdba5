//! `kafka://` and `redpanda://` URLs: brokers, the profile, librdkafka settings and our own options.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use onex_core::{Error, Result, Secret};
use rdkafka::ClientConfig;

use super::errors;

/// Which producer defaults apply. Settings given in the URL always win.
///
/// | setting | `kafka` | `redpanda` |
/// |---|---|---|
/// | `enable.idempotence` | `true` | `true` |
/// | `acks` | `all` | `all` |
/// | `partitioner` | `murmur2_random` (Java-compatible) | `murmur2_random` |
/// | `compression.type` | `none` | `lz4` |
/// | `linger.ms` | `5` | `10` |
/// | `batch.size` | `1000000` | `1048576` |
/// | `message.timeout.ms` | `30000` | `30000` |
/// | `allow.auto.create.topics` | `false` (the bus creates topics itself) | `false` |
///
/// Consumers always get `enable.auto.commit=false` (the engine commits) and
/// `auto.offset.reset` from the subscription's `start_from`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Apache Kafka (and any Kafka-protocol broker such as tansu).
    Kafka,
    /// Redpanda: the same transport with Redpanda's recommended producer defaults.
    Redpanda,
}

impl Profile {
    /// `kafka` or `redpanda`.
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Kafka => "kafka",
            Profile::Redpanda => "redpanda",
        }
    }

    fn producer_defaults(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Profile::Kafka => &[("compression.type", "none"), ("linger.ms", "5"), ("batch.size", "1000000")],
            Profile::Redpanda => &[("compression.type", "lz4"), ("linger.ms", "10"), ("batch.size", "1048576")],
        }
    }
}

const COMMON_PRODUCER_DEFAULTS: [(&str, &str); 5] = [
    ("enable.idempotence", "true"),
    ("acks", "all"),
    ("partitioner", "murmur2_random"),
    ("message.timeout.ms", "30000"),
    ("allow.auto.create.topics", "false"),
];

/// Options read by onex itself, never passed to librdkafka.
pub(crate) const OWN_OPTIONS: [&str; 6] =
    ["max_message_bytes", "replication_factor", "connect_timeout_ms", "request_timeout_ms", "partitions", "auto_create_topics"];

/// Settings that only a producer understands (librdkafka warns when a consumer gets them).
const PRODUCER_ONLY: [&str; 20] = [
    "acks",
    "request.required.acks",
    "enable.idempotence",
    "partitioner",
    "compression.type",
    "compression.codec",
    "compression.level",
    "linger.ms",
    "queue.buffering.max.ms",
    "queue.buffering.max.messages",
    "queue.buffering.max.kbytes",
    "batch.size",
    "batch.num.messages",
    "message.timeout.ms",
    "delivery.timeout.ms",
    "retries",
    "message.send.max.retries",
    "max.in.flight.requests.per.connection",
    "max.in.flight",
    "sticky.partitioning.linger.ms",
];

/// Settings that only a consumer understands.
const CONSUMER_PREFIXES: [&str; 13] = [
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "group.",
    "auto.offset.reset",
    "fetch.",
    "max.poll.interval.ms",
    "partition.assignment.strategy",
    "enable.auto.commit",
    "auto.commit.interval.ms",
    "queued.",
    "isolation.level",
    "max.partition.fetch.bytes",
    "check.crcs",
];

/// Whether a setting holds a credential: its value is never printed.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.contains("password") || k.contains("secret") || k == "ssl.key.pem" || k == "sasl.oauthbearer.config" || k.ends_with(".jaas.config")
}

fn is_producer_only(key: &str) -> bool {
    PRODUCER_ONLY.contains(&key)
}

fn is_consumer_only(key: &str) -> bool {
    CONSUMER_PREFIXES.iter().any(|p| if p.ends_with('.') { key.starts_with(p) } else { key == *p })
}

/// Settings of a [`super::KafkaTransport`].
#[derive(Clone)]
pub struct KafkaConfig {
    /// Producer defaults.
    pub profile: Profile,
    /// `host:port[,host:port]`.
    pub brokers: String,
    /// librdkafka settings from the URL or config. Values are held as [`Secret`] so that no
    /// `Debug` of this struct can print a password; [`KafkaConfig::effective_producer_settings`]
    /// shows the non-secret ones.
    settings: BTreeMap<String, Secret>,
    /// Largest record (key + value + headers) the transport accepts (default 1 MiB, Kafka's
    /// default `message.max.bytes`); larger ones fail with `TooLarge` before anything is sent.
    pub max_message_bytes: usize,
    /// Replication factor of created topics (`-1` = the broker's default).
    pub replication_factor: i32,
    /// How long `from_url` waits for the first metadata round trip.
    pub connect_timeout: Duration,
    /// Time limit of admin and metadata requests.
    pub request_timeout: Duration,
}

impl fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaConfig")
            .field("profile", &self.profile)
            .field("brokers", &self.brokers)
            .field("settings", &self.shown(self.settings.iter().map(|(k, v)| (k.as_str(), v.expose()))))
            .field("max_message_bytes", &self.max_message_bytes)
            .field("replication_factor", &self.replication_factor)
            .finish()
    }
}

impl KafkaConfig {
    /// Settings for `brokers` with a profile's defaults.
    pub fn new(profile: Profile, brokers: impl Into<String>) -> Self {
        KafkaConfig {
            profile,
            brokers: brokers.into(),
            settings: BTreeMap::new(),
            max_message_bytes: 1024 * 1024,
            replication_factor: -1,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
        }
    }

    /// Adds a librdkafka setting (or one of our own options), checking it.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let num = |what: &str| -> Result<u64> {
            value.parse().map_err(|_| Error::config(format!("Kafka option {key}={value:?} must be a non-negative number ({what})")))
        };
        match key {
            "partitions" | "auto_create_topics" => {} // bus-level, read by the provider
            "max_message_bytes" => self.max_message_bytes = num("bytes")? as usize,
            "replication_factor" => {
                self.replication_factor = value.parse().ok().filter(|n: &i32| *n == -1 || *n > 0).ok_or_else(|| {
                    Error::config(format!("replication_factor={value:?} must be a positive number or -1 (broker default)"))
                })?
            }
            "connect_timeout_ms" => self.connect_timeout = Duration::from_millis(num("milliseconds")?),
            "request_timeout_ms" => self.request_timeout = Duration::from_millis(num("milliseconds")?),
            "bootstrap.servers" | "metadata.broker.list" => self.brokers = value.to_string(),
            "group.id" | "enable.auto.commit" => {
                return Err(Error::config(format!(
                    "Kafka setting {key:?} is managed by onex (the subscription's group and the engine's commits); remove it from the URL"
                )))
            }
            _ => {
                // Checked against librdkafka's property table now, so a typo fails at connect.
                let mut probe = ClientConfig::new();
                probe.set(key, value);
                if let Err(e) = probe.create_native_config() {
                    return Err(errors::from_kafka(e, "checking Kafka settings", &self.brokers));
                }
                self.settings.insert(key.to_string(), Secret::new(value));
            }
        }
        Ok(())
    }

    /// Parses `kafka://host:port[,host:port][?k=v&…]` or `redpanda://…`. `user:password@`
    /// becomes `sasl.username` / `sasl.password`. Takes the raw string because the `url`
    /// crate cannot parse a comma-separated broker list as an authority.
    pub fn parse(raw: &str) -> Result<Self> {
        let bad = |why: String| {
            Error::config(format!(
                "invalid Kafka URL {:?}: {why}; expected kafka://HOST:PORT[,HOST:PORT][?setting=value&…]",
                onex_core::sanitize::sanitize(raw)
            ))
        };
        let (scheme, rest) = raw.split_once("://").ok_or_else(|| bad("no scheme".into()))?;
        let profile = match scheme {
            "kafka" => Profile::Kafka,
            "redpanda" => Profile::Redpanda,
            other => return Err(bad(format!("scheme {other:?} is not kafka or redpanda"))),
        };
        let (authority, query) = match rest.split_once('?') {
            Some((a, q)) => (a, Some(q)),
            None => (rest, None),
        };
        let authority = authority.trim_end_matches('/');
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let mut brokers = Vec::new();
        for part in hosts.split(',').filter(|p| !p.is_empty()) {
            let (host, port) = match part.rsplit_once(':') {
                Some((h, p)) => (h, p.parse::<u16>().map_err(|_| bad(format!("port {p:?} of broker {part:?} is not a number")))?),
                None => (part, 9092),
            };
            if host.is_empty() {
                return Err(bad(format!("broker {part:?} has no host")));
            }
            brokers.push(format!("{host}:{port}"));
        }
        let mut config = KafkaConfig::new(profile, brokers.join(","));
        if let Some(u) = userinfo {
            let (user, pass) = u.split_once(':').unwrap_or((u, ""));
            let decode =
                |s: &str| url::form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned()).unwrap_or_default();
            config.set("sasl.username", &decode(user))?;
            if !pass.is_empty() {
                config.set("sasl.password", &decode(pass))?;
            }
        }
        for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            config.set(&k, &v)?;
        }
        if config.brokers.is_empty() {
            return Err(bad("no broker address".into()));
        }
        Ok(config)
    }

    fn shown<'a>(&self, it: impl Iterator<Item = (&'a str, &'a str)>) -> BTreeMap<String, String> {
        it.map(|(k, v)| (k.to_string(), if is_secret_key(k) { "***".to_string() } else { v.to_string() })).collect()
    }

    fn producer_pairs(&self) -> Vec<(String, String)> {
        let mut map: BTreeMap<String, String> = COMMON_PRODUCER_DEFAULTS.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        for (k, v) in self.profile.producer_defaults() {
            map.insert(k.to_string(), v.to_string());
        }
        // Room for protocol overhead above our own record limit, so our check is the one that speaks.
        map.insert("message.max.bytes".into(), (self.max_message_bytes + 64 * 1024).clamp(1000, 1_000_000_000).to_string());
        for (k, v) in &self.settings {
            if !is_consumer_only(k) {
                map.insert(k.clone(), v.expose().to_string());
            }
        }
        map.into_iter().collect()
    }

    /// The producer's settings after defaults, with secrets masked (for health and describe).
    pub fn effective_producer_settings(&self) -> BTreeMap<String, String> {
        let pairs = self.producer_pairs();
        self.shown(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    /// librdkafka config of the producer (also used by the admin client), after defaults.
    /// Public so a baseline or a plain client can use exactly the transport's settings.
    pub fn producer_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        for (k, v) in self.producer_pairs() {
            c.set(k, v);
        }
        c
    }

    /// librdkafka config of a group member (or of a reader of committed offsets); `reset` is
    /// `auto.offset.reset` (`earliest` or `latest`).
    pub fn consumer_config(&self, group: &str, reset: &str) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        c.set("group.id", group);
        c.set("enable.auto.commit", "false");
        c.set("enable.auto.offset.store", "false");
        c.set("enable.partition.eof", "false");
        c.set("allow.auto.create.topics", "false");
        c.set("auto.offset.reset", reset);
        c.set("message.max.bytes", (self.max_message_bytes + 64 * 1024).clamp(1000, 1_000_000_000).to_string());
        for (k, v) in &self.settings {
            if !is_producer_only(k) {
                c.set(k, v.expose());
            }
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use onex_core::ErrorKind;

    #[test]
    fn parses_brokers_profile_and_settings() {
        let c = KafkaConfig::parse("redpanda://a:9092,b:9093?client.id=svc&linger.ms=20&partitions=8&max_message_bytes=2048").unwrap();
        assert_eq!(c.profile, Profile::Redpanda);
        assert_eq!(c.brokers, "a:9092,b:9093");
        assert_eq!(c.max_message_bytes, 2048);
        let p = c.effective_producer_settings();
        assert_eq!(p["linger.ms"], "20", "URL wins over the profile");
        assert_eq!(p["compression.type"], "lz4");
        assert_eq!(p["enable.idempotence"], "true");
        assert_eq!(p["client.id"], "svc");
        assert!(!p.contains_key("partitions"), "bus-level options are not passed to librdkafka");
        assert_eq!(KafkaConfig::parse("kafka://h").unwrap().brokers, "h:9092");
    }

    #[test]
    fn consumer_and_producer_settings_are_routed() {
        let c = KafkaConfig::parse("kafka://h:1?session.timeout.ms=6000&linger.ms=1").unwrap();
        let cons = c.consumer_config("g", "earliest");
        assert_eq!(cons.get("session.timeout.ms"), Some("6000"));
        assert_eq!(cons.get("linger.ms"), None);
        assert_eq!(c.producer_config().get("session.timeout.ms"), None);
    }

    #[test]
    fn unknown_settings_and_bad_values_fail_clearly() {
        let e = KafkaConfig::parse("kafka://h:1?lingr.ms=5").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(e.to_string().contains("\"lingr.ms\""), "{e}");
        let e = KafkaConfig::parse("kafka://h:1?linger.ms=soon").unwrap_err();
        assert!(e.to_string().contains("linger.ms"), "{e}");
        assert!(KafkaConfig::parse("kafka://h:port").unwrap_err().to_string().contains("\"port\""));
        assert!(KafkaConfig::parse("kafka://h:1?group.id=x").unwrap_err().to_string().contains("managed by onex"));
        assert!(KafkaConfig::parse("kafka://h:1?replication_factor=0").is_err());
    }

    #[test]
    fn passwords_never_print() {
        let c =
            KafkaConfig::parse("kafka://alice:s3cr%40t@h:1?security.protocol=sasl_plaintext&sasl.mechanisms=PLAIN&ssl.key.password=k3y")
                .unwrap();
        let shown = format!("{c:?} {:?}", c.effective_producer_settings());
        assert!(!shown.contains("s3cr") && !shown.contains("k3y"), "{shown}");
        assert!(shown.contains("alice"));
        assert_eq!(c.producer_config().get("sasl.password"), Some("s3cr@t"), "the URL password is decoded and used");
    }
}
