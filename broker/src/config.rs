//! Broker configuration: Kafka's config names and defaults, from a TOML file, `SLUICE_*`
//! environment variables and `--set key=value` flags, in rising order of precedence.
//!
//! Everything explicitly set is kept in `explicit` so DescribeConfigs can tell a value an
//! operator chose (STATIC_BROKER_CONFIG) from a default (DEFAULT_CONFIG).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use sluice_controller::configs::{topic_config, TOPIC_CONFIGS};

use crate::storage::LogConfig;

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path} is not valid TOML: {message}")]
    Toml { path: PathBuf, message: String },
    #[error("invalid value '{value}' for {name}: {why}")]
    Invalid { name: String, value: String, why: String },
}

/// Which parts of Sluice a node runs (`process.roles`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    pub broker: bool,
    pub controller: bool,
}

impl Roles {
    /// Parses `broker`, `controller` or both, comma-separated.
    ///
    /// # Errors
    /// An unknown or missing role.
    pub fn parse(value: &str) -> Result<Self, ConfigError> {
        let invalid =
            |why: &str| ConfigError::Invalid { name: "process.roles".into(), value: value.into(), why: why.into() };
        let mut roles = Self { broker: false, controller: false };
        for role in value.split(',').map(str::trim).filter(|r| !r.is_empty()) {
            match role {
                "broker" => roles.broker = true,
                "controller" => roles.controller = true,
                _ => return Err(invalid("roles are 'broker' and 'controller'")),
            }
        }
        if !roles.broker && !roles.controller {
            return Err(invalid("give at least one of 'broker' and 'controller'"));
        }
        Ok(roles)
    }
}

/// Parses `controller.quorum.voters`: `ID@HOST:PORT` entries, comma-separated.
///
/// # Errors
/// An entry that is not `ID@HOST:PORT`, or an id given twice.
pub fn parse_voters(value: &str) -> Result<BTreeMap<i32, String>, ConfigError> {
    let invalid =
        |why: String| ConfigError::Invalid { name: "controller.quorum.voters".into(), value: value.into(), why };
    let mut voters = BTreeMap::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (id, addr) = entry.split_once('@').ok_or_else(|| invalid(format!("'{entry}' is not ID@HOST:PORT")))?;
        let id: i32 = id.trim().parse().map_err(|_| invalid(format!("'{id}' is not a node id")))?;
        let (host, port) = addr.rsplit_once(':').ok_or_else(|| invalid(format!("'{addr}' is not HOST:PORT")))?;
        if host.is_empty() || port.parse::<u16>().is_err() {
            return Err(invalid(format!("'{addr}' is not HOST:PORT")));
        }
        if voters.insert(id, addr.to_string()).is_some() {
            return Err(invalid(format!("node {id} is listed twice")));
        }
    }
    Ok(voters)
}

/// A PLAINTEXT listener address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    /// Parses Kafka's listener syntax, `PLAINTEXT://HOST:PORT` (one listener).
    ///
    /// # Errors
    /// Anything but one PLAINTEXT listener with a host and a port.
    pub fn parse_listener(name: &str, value: &str) -> Result<Self, ConfigError> {
        Self::parse_named(name, value, "PLAINTEXT")
    }

    /// Parses `LISTENER_NAME://HOST:PORT` for the given listener name.
    ///
    /// # Errors
    /// Another listener name, or no host and port.
    pub fn parse_named(name: &str, value: &str, listener_name: &str) -> Result<Self, ConfigError> {
        let invalid = |why: &str| ConfigError::Invalid { name: name.into(), value: value.into(), why: why.into() };
        let rest = value
            .trim()
            .strip_prefix(listener_name)
            .and_then(|r| r.strip_prefix("://"))
            .ok_or_else(|| invalid("listeners are PLAINTEXT://HOST:PORT and CONTROLLER://HOST:PORT"))?;
        let (host, port) = rest.rsplit_once(':').ok_or_else(|| invalid("expected HOST:PORT"))?;
        let port = port.parse::<u16>().map_err(|_| invalid("port must be 0..65535"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let host = if host.is_empty() { "0.0.0.0" } else { host };
        Ok(Self { host: host.to_string(), port })
    }

    /// The address to bind.
    ///
    /// # Errors
    /// When the host is not an IP address or resolvable name.
    pub fn socket_addr(&self) -> std::io::Result<SocketAddr> {
        use std::net::ToSocketAddrs;
        (self.host.as_str(), self.port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "listener host did not resolve"))
    }
}

/// The broker's settings. Field names follow Kafka's config names.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// `node.id`
    pub node_id: i32,
    /// `listeners`: the PLAINTEXT (client) listener
    pub listener: Endpoint,
    /// `listeners`: the controller listener (named by `controller.listener.names`), if any
    pub controller_listener: Option<Endpoint>,
    /// `process.roles`
    pub roles: Roles,
    /// `controller.quorum.voters` (`ID@HOST:PORT,...`): empty means this node alone is the quorum
    pub quorum_voters: BTreeMap<i32, String>,
    /// `controller.quorum.election.timeout.ms`
    pub quorum_election_timeout_ms: u64,
    /// `broker.heartbeat.interval.ms`
    pub broker_heartbeat_interval_ms: u64,
    /// `broker.session.timeout.ms`
    pub broker_session_timeout_ms: u64,
    /// `advertised.listeners` (defaults to the listener, with the bound port if it was 0)
    pub advertised_listener: Option<Endpoint>,
    /// `log.dirs`
    pub data_dir: PathBuf,
    /// `num.partitions`
    pub num_partitions: i32,
    /// `default.replication.factor`
    pub default_replication_factor: i16,
    /// `auto.create.topics.enable`
    pub auto_create_topics_enable: bool,
    /// `socket.request.max.bytes`: larger frames close the connection before anything is allocated.
    pub socket_request_max_bytes: usize,
    /// `max.connections`
    pub max_connections: usize,
    /// `connections.max.idle.ms`: a connection that sends no request for this long is closed.
    pub connections_max_idle_ms: u64,
    /// `queued.max.requests`: requests one connection may have in flight (pipelined).
    pub queued_max_requests: usize,
    /// `queued.max.request.bytes`: frame bytes admitted across all connections at once.
    pub queued_max_request_bytes: usize,
    /// `log.retention.check.interval.ms`
    pub log_retention_check_interval_ms: u64,
    /// `fetch.max.bytes`: the most one Fetch response carries.
    pub fetch_max_bytes: usize,
    /// Consumer-group coordination settings (`offsets.topic.*`, `group.*`).
    pub groups: GroupSettings,
    /// Follower fetching and ISR settings (`replica.*`).
    pub replication: ReplicationSettings,
    /// Every value set explicitly, by Kafka name (file, environment, flags).
    pub explicit: BTreeMap<String, String>,
}

/// How followers fetch and when the leader drops them from the ISR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicationSettings {
    /// `replica.lag.time.max.ms`: a follower not caught up for this long leaves the ISR.
    pub lag_time_max_ms: i64,
    /// `replica.fetch.wait.max.ms`: how long a follower's fetch waits at the leader for data.
    pub fetch_wait_max_ms: i32,
    /// `replica.fetch.max.bytes`: per partition per follower fetch.
    pub fetch_max_bytes: i32,
    /// `replica.fetch.response.max.bytes`: per follower fetch.
    pub fetch_response_max_bytes: i32,
    /// `replica.fetch.backoff.ms`: pause after a failed follower fetch.
    pub fetch_backoff_ms: u64,
    /// `replica.high.watermark.checkpoint.interval.ms`
    pub high_watermark_checkpoint_interval_ms: u64,
}

/// Broker configs Sluice knows besides the topic-config synonyms, with Kafka's defaults
/// (Sluice's own where noted in README.md).
pub const BROKER_DEFAULTS: &[(&str, &str)] = &[
    ("advertised.listeners", ""),
    ("auto.create.topics.enable", "true"),
    ("broker.heartbeat.interval.ms", "2000"),
    ("broker.session.timeout.ms", "9000"),
    ("connections.max.idle.ms", "600000"),
    ("controller.listener.names", "CONTROLLER"),
    ("controller.quorum.election.timeout.ms", "1000"),
    ("controller.quorum.voters", ""),
    ("default.replication.factor", "1"),
    ("fetch.max.bytes", "57671680"),
    ("group.consumer.heartbeat.interval.ms", "5000"),
    ("group.consumer.max.size", "2147483647"),
    ("group.consumer.session.timeout.ms", "45000"),
    ("group.initial.rebalance.delay.ms", "3000"),
    ("group.max.session.timeout.ms", "1800000"),
    ("group.max.size", "2147483647"),
    ("group.min.session.timeout.ms", "6000"),
    ("listeners", "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"),
    ("log.dirs", "./data"),
    ("log.retention.check.interval.ms", "300000"),
    ("max.connections", "10000"),
    ("node.id", "1"),
    ("num.partitions", "1"),
    ("offset.metadata.max.bytes", "4096"),
    ("offsets.retention.check.interval.ms", "600000"),
    ("offsets.retention.minutes", "10080"),
    ("offsets.topic.num.partitions", "50"),
    ("offsets.topic.replication.factor", "3"),
    ("process.roles", "broker,controller"),
    ("queued.max.request.bytes", "268435456"),
    ("queued.max.requests", "500"),
    ("replica.fetch.backoff.ms", "1000"),
    ("replica.fetch.max.bytes", "1048576"),
    ("replica.fetch.response.max.bytes", "10485760"),
    ("replica.fetch.wait.max.ms", "500"),
    ("replica.high.watermark.checkpoint.interval.ms", "5000"),
    ("replica.lag.time.max.ms", "30000"),
    ("socket.request.max.bytes", "104857600"),
];

/// Broker configs Sluice reads that have no default of their own (units folded into `.ms`
/// names, optional settings).
const OTHER_KNOWN: &[&str] = &["broker.rack", "log.retention.hours", "log.retention.minutes", "log.roll.hours"];

/// Whether Sluice reads broker config `name` (anything else is accepted but has no effect).
pub fn is_known_broker_config(name: &str) -> bool {
    broker_default(name).is_some() || OTHER_KNOWN.contains(&name)
}

/// The default of broker config `name`, if Sluice knows it.
pub fn broker_default(name: &str) -> Option<&'static str> {
    if let Some((_, v)) = BROKER_DEFAULTS.iter().find(|(n, _)| *n == name) {
        return Some(v);
    }
    TOPIC_CONFIGS.iter().find(|d| d.broker_synonym == Some(name)).map(|d| d.default)
}

fn parse<T: std::str::FromStr>(values: &BTreeMap<String, String>, name: &str) -> Result<T, ConfigError> {
    let value = values.get(name).map(String::as_str).or_else(|| broker_default(name)).unwrap_or_default();
    value.trim().parse::<T>().map_err(|_| ConfigError::Invalid {
        name: name.into(),
        value: value.into(),
        why: format!("expected a {}", std::any::type_name::<T>()),
    })
}

impl BrokerConfig {
    /// Builds the config from explicitly set values (Kafka names); the rest take defaults.
    ///
    /// # Errors
    /// A value that does not parse, or a listener Sluice cannot serve.
    pub fn from_values(mut explicit: BTreeMap<String, String>) -> Result<Self, ConfigError> {
        normalize_time_units(&mut explicit);
        let roles = Roles::parse(explicit.get("process.roles").map_or("broker,controller", String::as_str))?;
        let listeners_value = match explicit.get("listeners") {
            Some(v) => v.clone(),
            None if roles.broker && roles.controller => "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093".into(),
            None if roles.broker => "PLAINTEXT://127.0.0.1:9092".into(),
            None => "CONTROLLER://127.0.0.1:9093".into(),
        };
        let controller_name = explicit.get("controller.listener.names").map_or("CONTROLLER", |v| v.trim());
        let mut listener = None;
        let mut controller_listener = None;
        for entry in listeners_value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if entry.starts_with(&format!("{controller_name}://")) {
                controller_listener = Some(Endpoint::parse_named("listeners", entry, controller_name)?);
            } else {
                listener = Some(Endpoint::parse_listener("listeners", entry)?);
            }
        }
        let invalid = |why: &str| ConfigError::Invalid {
            name: "listeners".into(),
            value: listeners_value.clone(),
            why: why.into(),
        };
        let listener = match listener {
            Some(l) => l,
            None if !roles.broker => Endpoint { host: "127.0.0.1".into(), port: 0 },
            None => return Err(invalid("a broker needs a PLAINTEXT://HOST:PORT listener")),
        };
        let quorum_voters = parse_voters(explicit.get("controller.quorum.voters").map_or("", String::as_str))?;
        let node_id: i32 = parse(&explicit, "node.id")?;
        if roles.controller && !quorum_voters.is_empty() {
            if !quorum_voters.contains_key(&node_id) {
                return Err(invalid("a controller's node.id must be one of controller.quorum.voters"));
            }
            if controller_listener.is_none() {
                return Err(invalid("a controller in a quorum needs a CONTROLLER://HOST:PORT listener"));
            }
        }
        if !roles.controller && quorum_voters.is_empty() {
            return Err(ConfigError::Invalid {
                name: "controller.quorum.voters".into(),
                value: String::new(),
                why: "a broker-only node must be told where the controllers are".into(),
            });
        }
        let advertised_listener = match explicit.get("advertised.listeners") {
            Some(v) if !v.trim().is_empty() => Some(Endpoint::parse_listener("advertised.listeners", v)?),
            _ => None,
        };
        let config = Self {
            node_id,
            listener,
            controller_listener,
            roles,
            quorum_voters,
            quorum_election_timeout_ms: parse(&explicit, "controller.quorum.election.timeout.ms")?,
            broker_heartbeat_interval_ms: parse(&explicit, "broker.heartbeat.interval.ms")?,
            broker_session_timeout_ms: parse(&explicit, "broker.session.timeout.ms")?,
            advertised_listener,
            data_dir: PathBuf::from(explicit.get("log.dirs").map_or("./data", String::as_str)),
            num_partitions: parse(&explicit, "num.partitions")?,
            default_replication_factor: parse(&explicit, "default.replication.factor")?,
            auto_create_topics_enable: parse(&explicit, "auto.create.topics.enable")?,
            socket_request_max_bytes: parse(&explicit, "socket.request.max.bytes")?,
            max_connections: parse(&explicit, "max.connections")?,
            queued_max_requests: parse(&explicit, "queued.max.requests")?,
            connections_max_idle_ms: parse(&explicit, "connections.max.idle.ms")?,
            queued_max_request_bytes: parse(&explicit, "queued.max.request.bytes")?,
            log_retention_check_interval_ms: parse(&explicit, "log.retention.check.interval.ms")?,
            fetch_max_bytes: parse(&explicit, "fetch.max.bytes")?,
            groups: GroupSettings::from_values(&explicit)?,
            replication: ReplicationSettings {
                lag_time_max_ms: parse(&explicit, "replica.lag.time.max.ms")?,
                fetch_wait_max_ms: parse(&explicit, "replica.fetch.wait.max.ms")?,
                fetch_max_bytes: parse(&explicit, "replica.fetch.max.bytes")?,
                fetch_response_max_bytes: parse(&explicit, "replica.fetch.response.max.bytes")?,
                fetch_backoff_ms: parse(&explicit, "replica.fetch.backoff.ms")?,
                high_watermark_checkpoint_interval_ms: parse(
                    &explicit,
                    "replica.high.watermark.checkpoint.interval.ms",
                )?,
            },
            explicit,
        };
        config.check_topic_synonyms()?;
        Ok(config)
    }

    fn check_topic_synonyms(&self) -> Result<(), ConfigError> {
        for def in TOPIC_CONFIGS {
            let Some(synonym) = def.broker_synonym else { continue };
            if let Some(value) = self.explicit.get(synonym) {
                sluice_controller::configs::validate_topic_config(def.name, value)
                    .map_err(|why| ConfigError::Invalid { name: synonym.into(), value: value.clone(), why })?;
            }
        }
        if self.socket_request_max_bytes < 64 || self.queued_max_requests == 0 || self.max_connections == 0 {
            return Err(ConfigError::Invalid {
                name: "socket.request.max.bytes/queued.max.requests/max.connections".into(),
                value: String::new(),
                why: "must be positive".into(),
            });
        }
        Ok(())
    }

    /// The effective value of topic config `name` for a topic with `overrides`, and where it came
    /// from: the topic, the broker's static config, or the default.
    pub fn topic_config_value(
        &self,
        name: &str,
        overrides: &BTreeMap<String, String>,
    ) -> Option<(String, ConfigSource)> {
        let def = topic_config(name)?;
        if let Some(v) = overrides.get(name) {
            return Some((v.clone(), ConfigSource::Topic));
        }
        if let Some(v) = def.broker_synonym.and_then(|synonym| self.explicit.get(synonym)) {
            return Some((v.clone(), ConfigSource::StaticBroker));
        }
        Some((def.default.to_string(), ConfigSource::Default))
    }

    /// The storage settings of a topic with `overrides`.
    pub fn log_config(&self, overrides: &BTreeMap<String, String>) -> LogConfig {
        let get = |name: &str| self.topic_config_value(name, overrides).map(|(v, _)| v).unwrap_or_default();
        let num = |name: &str, fallback: i64| get(name).trim().parse::<i64>().unwrap_or(fallback);
        let d = LogConfig::default();
        LogConfig {
            segment_bytes: u64::try_from(num("segment.bytes", d.segment_bytes as i64)).unwrap_or(d.segment_bytes),
            segment_ms: num("segment.ms", d.segment_ms),
            retention_ms: num("retention.ms", d.retention_ms),
            retention_bytes: num("retention.bytes", d.retention_bytes),
            max_message_bytes: i32::try_from(num("max.message.bytes", i64::from(d.max_message_bytes)))
                .unwrap_or(d.max_message_bytes),
            flush_messages: num("flush.messages", d.flush_messages),
            flush_ms: num("flush.ms", d.flush_ms),
            message_timestamp_type_log_append: get("message.timestamp.type") == "LogAppendTime",
            message_timestamp_before_max_ms: num("message.timestamp.before.max.ms", d.message_timestamp_before_max_ms),
            message_timestamp_after_max_ms: num("message.timestamp.after.max.ms", d.message_timestamp_after_max_ms),
            cleanup_delete: get("cleanup.policy").split(',').any(|p| p.trim() == "delete"),
            index_interval_bytes: u32::try_from(num("index.interval.bytes", 4096)).unwrap_or(4096),
            ..d
        }
    }

    /// The endpoint clients are told to connect to.
    pub fn advertised(&self, bound_port: u16) -> Endpoint {
        self.advertised_listener.clone().unwrap_or_else(|| Endpoint {
            host: if self.listener.host == "0.0.0.0" { "127.0.0.1".into() } else { self.listener.host.clone() },
            port: bound_port,
        })
    }
}

/// Consumer-group coordination settings, by their Kafka names.
#[derive(Debug, Clone)]
pub struct GroupSettings {
    /// `offsets.topic.num.partitions`
    pub offsets_topic_num_partitions: i32,
    /// `offsets.topic.replication.factor` (capped at the number of brokers when the topic is made)
    pub offsets_topic_replication_factor: i16,
    /// `group.initial.rebalance.delay.ms`
    pub initial_rebalance_delay_ms: i64,
    /// `group.min.session.timeout.ms`
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`
    pub max_session_timeout_ms: i32,
    /// `group.max.size`
    pub max_size: i32,
    /// `offsets.retention.minutes`
    pub offsets_retention_minutes: i64,
    /// `offsets.retention.check.interval.ms`
    pub offsets_retention_check_interval_ms: i64,
    /// `offset.metadata.max.bytes`
    pub offset_metadata_max_bytes: i32,
    /// `group.consumer.session.timeout.ms` (KIP-848 groups)
    pub consumer_session_timeout_ms: i32,
    /// `group.consumer.heartbeat.interval.ms` (KIP-848 groups)
    pub consumer_heartbeat_interval_ms: i32,
    /// `group.consumer.max.size` (KIP-848 groups)
    pub consumer_max_size: i32,
}

impl GroupSettings {
    fn from_values(values: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let settings = Self {
            offsets_topic_num_partitions: parse(values, "offsets.topic.num.partitions")?,
            offsets_topic_replication_factor: parse(values, "offsets.topic.replication.factor")?,
            initial_rebalance_delay_ms: parse(values, "group.initial.rebalance.delay.ms")?,
            min_session_timeout_ms: parse(values, "group.min.session.timeout.ms")?,
            max_session_timeout_ms: parse(values, "group.max.session.timeout.ms")?,
            max_size: parse(values, "group.max.size")?,
            offsets_retention_minutes: parse(values, "offsets.retention.minutes")?,
            offsets_retention_check_interval_ms: parse(values, "offsets.retention.check.interval.ms")?,
            offset_metadata_max_bytes: parse(values, "offset.metadata.max.bytes")?,
            consumer_session_timeout_ms: parse(values, "group.consumer.session.timeout.ms")?,
            consumer_heartbeat_interval_ms: parse(values, "group.consumer.heartbeat.interval.ms")?,
            consumer_max_size: parse(values, "group.consumer.max.size")?,
        };
        if settings.offsets_topic_num_partitions < 1
            || settings.offsets_topic_replication_factor < 1
            || settings.max_size < 1
            || settings.consumer_max_size < 1
            || settings.consumer_session_timeout_ms < 1
            || settings.consumer_heartbeat_interval_ms < 1
        {
            return Err(ConfigError::Invalid {
                name: "offsets.topic.num.partitions/offsets.topic.replication.factor/group.max.size/group.consumer.*"
                    .into(),
                value: String::new(),
                why: "must be at least 1".into(),
            });
        }
        Ok(settings)
    }
}

/// Where an effective config value came from (DescribeConfigs' config_source codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    Topic = 1,
    StaticBroker = 4,
    Default = 5,
}

/// Kafka accepts retention and roll times in hours and minutes too; fold them into the `.ms`
/// names (the most precise one set wins, as in Kafka).
fn normalize_time_units(values: &mut BTreeMap<String, String>) {
    let pairs: [(&str, &[(&str, i64)]); 2] = [
        ("log.retention.ms", &[("log.retention.minutes", 60_000), ("log.retention.hours", 3_600_000)]),
        ("log.roll.ms", &[("log.roll.hours", 3_600_000)]),
    ];
    for (ms_name, coarser) in pairs {
        if values.contains_key(ms_name) {
            continue;
        }
        for (name, factor) in coarser {
            if let Some(n) = values.get(*name).and_then(|v| v.trim().parse::<i64>().ok()) {
                let ms = if n < 0 { -1 } else { n.saturating_mul(*factor) };
                values.insert(ms_name.to_string(), ms.to_string());
                break;
            }
        }
    }
}

/// Flattens a TOML document into Kafka-style dotted names: `[log] retention.ms = 5` and
/// `"log.retention.ms" = 5` both give `log.retention.ms = 5`.
///
/// # Errors
/// When the text is not TOML.
pub fn flatten_toml(path: &std::path::Path, text: &str) -> Result<BTreeMap<String, String>, ConfigError> {
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Toml { path: path.to_path_buf(), message: e.to_string() })?;
    let mut out = BTreeMap::new();
    flatten_into("", &toml::Value::Table(table), &mut out);
    Ok(out)
}

fn flatten_into(prefix: &str, value: &toml::Value, out: &mut BTreeMap<String, String>) {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten_into(&key, v, out);
            }
        }
        toml::Value::String(s) => {
            out.insert(prefix.to_string(), s.clone());
        }
        toml::Value::Array(items) => {
            let joined: Vec<String> =
                items.iter().map(|i| i.as_str().map_or_else(|| i.to_string(), String::from)).collect();
            out.insert(prefix.to_string(), joined.join(","));
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

/// Reads `SLUICE_*` variables as Kafka names: `SLUICE_LOG_RETENTION_MS` is `log.retention.ms`.
pub fn from_env(vars: impl Iterator<Item = (String, String)>) -> BTreeMap<String, String> {
    vars.filter_map(|(k, v)| {
        let name = k.strip_prefix("SLUICE_")?;
        if name.is_empty() || name == "BIN" || name == "CLUSTER_DIR" {
            return None;
        }
        Some((name.to_ascii_lowercase().replace('_', "."), v))
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let config = BrokerConfig::from_values(BTreeMap::new()).expect("defaults");
        assert_eq!(config.listener, Endpoint { host: "127.0.0.1".into(), port: 9092 });
        assert_eq!(config.num_partitions, 1);
        assert!(config.auto_create_topics_enable);
        let mut values = BTreeMap::new();
        values.insert("log.retention.hours".to_string(), "2".to_string());
        values.insert("listeners".to_string(), "PLAINTEXT://0.0.0.0:19092".to_string());
        let config = BrokerConfig::from_values(values).expect("values");
        let (v, source) = config.topic_config_value("retention.ms", &BTreeMap::new()).expect("known");
        assert_eq!((v.as_str(), source), ("7200000", ConfigSource::StaticBroker));
        assert_eq!(config.advertised(19092), Endpoint { host: "127.0.0.1".into(), port: 19092 });
    }

    #[test]
    fn toml_and_env_flatten_to_kafka_names() {
        let text = "num.partitions = 3\n[log]\nretention.ms = 5\n";
        let values = flatten_toml(std::path::Path::new("x.toml"), text).expect("toml");
        assert_eq!(values.get("num.partitions").map(String::as_str), Some("3"));
        assert_eq!(values.get("log.retention.ms").map(String::as_str), Some("5"));
        let env = from_env(vec![("SLUICE_AUTO_CREATE_TOPICS_ENABLE".to_string(), "false".to_string())].into_iter());
        assert_eq!(env.get("auto.create.topics.enable").map(String::as_str), Some("false"));
    }

    #[test]
    fn bad_values_are_refused() {
        let mut values = BTreeMap::new();
        values.insert("listeners".to_string(), "SSL://x:1".to_string());
        assert!(BrokerConfig::from_values(values).is_err());
        let mut values = BTreeMap::new();
        values.insert("log.retention.ms".to_string(), "soon".to_string());
        assert!(BrokerConfig::from_values(values).is_err());
    }
}
