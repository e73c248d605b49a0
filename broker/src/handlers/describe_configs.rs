//! DescribeConfigs (key 32), versions 1-4: the effective configs of topics (resource type 2) and
//! of this broker (resource type 4), each with where its value came from, its type (v3+) and,
//! when asked, its synonyms in precedence order. Documentation (v3+) is always null: Sluice keeps
//! no config documentation.
//!
//! Also owns [`topic_config_entries`], the one description of a topic's configs, which
//! CreateTopics (v5+) reuses so that both APIs describe a topic the same way.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{ApiKey, DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;
use sluice_controller::configs::{ConfigType, TOPIC_CONFIGS};
use sluice_controller::image::MetadataImage;
use sluice_controller::ops::topics::validate_topic_name;

use super::{Handler, RequestContext};
use crate::broker::Broker;
use crate::config::{BrokerConfig, ConfigSource, BROKER_DEFAULTS};

pub struct DescribeConfigsHandler;

/// Kafka's ConfigResource type codes (shared with AlterConfigs and IncrementalAlterConfigs).
pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;

/// DescribeConfigs' "unknown" config type, for a broker config Sluice has not typed.
const CONFIG_TYPE_UNKNOWN: i8 = 0;

/// One source a config value could come from, most precedent first in [`ConfigEntry::synonyms`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigSynonym {
    pub name: String,
    pub value: String,
    pub source: ConfigSource,
}

/// One described config, independent of the response type that carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    pub name: String,
    pub value: String,
    pub source: ConfigSource,
    pub read_only: bool,
    pub is_sensitive: bool,
    /// Kafka's config type code (DescribeConfigs v3+).
    pub config_type: i8,
    /// Every level that sets this config, the effective one first.
    pub synonyms: Vec<ConfigSynonym>,
}

/// Every topic config of a topic with `overrides`: the effective value, its source, and its
/// synonyms (topic override, then the broker's static setting, then the default).
pub fn topic_config_entries(config: &BrokerConfig, overrides: &BTreeMap<String, String>) -> Vec<ConfigEntry> {
    TOPIC_CONFIGS
        .iter()
        .filter_map(|def| {
            let (value, source) = config.topic_config_value(def.name, overrides)?;
            let mut synonyms = Vec::with_capacity(3);
            if let Some(v) = overrides.get(def.name) {
                synonyms.push(ConfigSynonym {
                    name: def.name.to_string(),
                    value: v.clone(),
                    source: ConfigSource::Topic,
                });
            }
            // A config no broker setting supplies has no synonyms but the topic's own (as in Kafka).
            if let Some(synonym) = def.broker_synonym {
                if let Some(v) = config.explicit.get(synonym) {
                    let name = synonym.to_string();
                    synonyms.push(ConfigSynonym { name, value: v.clone(), source: ConfigSource::StaticBroker });
                }
                let name = synonym.to_string();
                synonyms.push(ConfigSynonym { name, value: def.default.to_string(), source: ConfigSource::Default });
            }
            Some(ConfigEntry {
                name: def.name.to_string(),
                value,
                source,
                read_only: false,
                is_sensitive: false,
                config_type: def.config_type as i8,
                synonyms,
            })
        })
        .collect()
}

/// Kafka's type for a broker config that is not a topic config's synonym.
fn broker_config_type(name: &str) -> i8 {
    let config_type = match name {
        "auto.create.topics.enable" => ConfigType::Boolean,
        "default.replication.factor"
        | "fetch.max.bytes"
        | "max.connections"
        | "node.id"
        | "num.partitions"
        | "queued.max.requests"
        | "socket.request.max.bytes"
        | "group.initial.rebalance.delay.ms"
        | "group.max.session.timeout.ms"
        | "group.max.size"
        | "group.consumer.session.timeout.ms"
        | "group.consumer.heartbeat.interval.ms"
        | "group.consumer.max.size"
        | "group.min.session.timeout.ms"
        | "offset.metadata.max.bytes"
        | "offsets.retention.minutes"
        | "offsets.topic.num.partitions"
        | "offsets.topic.replication.factor"
        | "broker.heartbeat.interval.ms"
        | "broker.session.timeout.ms"
        | "controller.quorum.election.timeout.ms"
        | "replica.fetch.backoff.ms"
        | "replica.fetch.max.bytes"
        | "replica.fetch.response.max.bytes"
        | "replica.fetch.wait.max.ms" => ConfigType::Int,
        "connections.max.idle.ms"
        | "replica.high.watermark.checkpoint.interval.ms"
        | "replica.lag.time.max.ms"
        | "log.retention.check.interval.ms"
        | "queued.max.request.bytes"
        | "offsets.retention.check.interval.ms" => ConfigType::Long,
        "advertised.listeners" | "listeners" | "log.dirs" => ConfigType::String,
        "controller.listener.names" | "controller.quorum.voters" => ConfigType::List,
        "process.roles" => ConfigType::List,
        _ => return CONFIG_TYPE_UNKNOWN,
    };
    config_type as i8
}

/// Every broker config Sluice knows (its own and the topic configs' broker synonyms), with the
/// value set at start-up or the default. All are read-only: Sluice has no dynamic broker configs.
pub fn broker_config_entries(config: &BrokerConfig) -> Vec<ConfigEntry> {
    let mut known: BTreeMap<&str, (&str, i8)> =
        BROKER_DEFAULTS.iter().map(|(name, default)| (*name, (*default, broker_config_type(name)))).collect();
    for def in TOPIC_CONFIGS {
        if let Some(synonym) = def.broker_synonym {
            known.entry(synonym).or_insert((def.default, def.config_type as i8));
        }
    }
    known
        .into_iter()
        .map(|(name, (default, config_type))| {
            let default_synonym =
                ConfigSynonym { name: name.to_string(), value: default.to_string(), source: ConfigSource::Default };
            let (value, source, synonyms) = match config.explicit.get(name) {
                Some(v) => {
                    let explicit =
                        ConfigSynonym { name: name.to_string(), value: v.clone(), source: ConfigSource::StaticBroker };
                    (v.clone(), ConfigSource::StaticBroker, vec![explicit, default_synonym])
                }
                None => (default.to_string(), ConfigSource::Default, vec![default_synonym]),
            };
            ConfigEntry {
                name: name.to_string(),
                value,
                source,
                read_only: true,
                is_sensitive: false,
                config_type,
                synonyms,
            }
        })
        .collect()
}

/// Why one resource could not be described: its error code and message.
type ResourceError = (ResponseError, String);

fn describe_topic(config: &BrokerConfig, image: &MetadataImage, name: &str) -> Result<Vec<ConfigEntry>, ResourceError> {
    validate_topic_name(name).map_err(|e| (ResponseError::InvalidTopicException, e.to_string()))?;
    if image.topic_by_name(name).is_none() {
        return Err((ResponseError::UnknownTopicOrPartition, format!("The topic '{name}' does not exist.")));
    }
    Ok(topic_config_entries(config, &image.topic_configs(name)))
}

/// The broker resource: this node's id, or the empty name for cluster-wide dynamic defaults
/// (Sluice has none, so that list is empty), as in Kafka.
fn describe_broker(config: &BrokerConfig, name: &str) -> Result<Vec<ConfigEntry>, ResourceError> {
    if name.is_empty() {
        return Ok(Vec::new());
    }
    let id: i32 = name
        .trim()
        .parse()
        .map_err(|_| (ResponseError::InvalidRequest, format!("Broker id must be an integer, but it is: {name}")))?;
    if id != config.node_id {
        let message = format!("Unexpected broker id, expected {} or empty string, but received {name}", config.node_id);
        return Err((ResponseError::InvalidRequest, message));
    }
    Ok(broker_config_entries(config))
}

/// Keeps only the entries named in `keys` (null keeps all; unknown names are simply absent).
fn filter_keys(entries: Vec<ConfigEntry>, keys: Option<&[StrBytes]>) -> Vec<ConfigEntry> {
    match keys {
        None => entries,
        Some(keys) => entries.into_iter().filter(|e| keys.iter().any(|k| k.as_str() == e.name)).collect(),
    }
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn entry_result(entry: &ConfigEntry, include_synonyms: bool) -> DescribeConfigsResourceResult {
    let synonyms = if include_synonyms {
        entry
            .synonyms
            .iter()
            .map(|s| {
                DescribeConfigsSynonym::default()
                    .with_name(str_bytes(&s.name))
                    .with_value(Some(str_bytes(&s.value)))
                    .with_source(s.source as i8)
            })
            .collect()
    } else {
        Vec::new()
    };
    DescribeConfigsResourceResult::default()
        .with_name(str_bytes(&entry.name))
        .with_value(Some(str_bytes(&entry.value)))
        .with_read_only(entry.read_only)
        .with_config_source(entry.source as i8)
        .with_is_sensitive(entry.is_sensitive)
        .with_synonyms(synonyms)
        .with_config_type(entry.config_type)
        .with_documentation(None)
}

impl Handler for DescribeConfigsHandler {
    type Request = DescribeConfigsRequest;
    type Response = DescribeConfigsResponse;
    const KEY: ApiKey = ApiKey::DescribeConfigs;
    const VERSIONS: (i16, i16) = (1, 4);

    async fn handle(
        broker: Arc<Broker>,
        _ctx: RequestContext,
        request: DescribeConfigsRequest,
    ) -> Option<DescribeConfigsResponse> {
        let image = broker.metadata.image();
        let results = request
            .resources
            .into_iter()
            .map(|resource| {
                let name = resource.resource_name.as_str();
                let described = match resource.resource_type {
                    RESOURCE_TOPIC => describe_topic(&broker.config, &image, name),
                    RESOURCE_BROKER => describe_broker(&broker.config, name),
                    other => Err((ResponseError::InvalidRequest, format!("Unsupported resource type: {other}"))),
                };
                let result = DescribeConfigsResult::default()
                    .with_resource_type(resource.resource_type)
                    .with_resource_name(resource.resource_name.clone());
                match described {
                    Ok(entries) => {
                        let entries = filter_keys(entries, resource.configuration_keys.as_deref());
                        let configs = entries.iter().map(|e| entry_result(e, request.include_synonyms)).collect();
                        result.with_error_message(None).with_configs(configs)
                    }
                    Err((error, message)) => {
                        result.with_error_code(error.code()).with_error_message(Some(StrBytes::from_string(message)))
                    }
                }
            })
            .collect();
        Some(DescribeConfigsResponse::default().with_results(results))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(values: &[(&str, &str)]) -> BrokerConfig {
        let values = values.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        BrokerConfig::from_values(values).expect("valid config")
    }

    fn find<'a>(entries: &'a [ConfigEntry], name: &str) -> &'a ConfigEntry {
        entries.iter().find(|e| e.name == name).unwrap_or_else(|| panic!("{name} not described"))
    }

    fn sources(entry: &ConfigEntry) -> Vec<(&str, &str, ConfigSource)> {
        entry.synonyms.iter().map(|s| (s.name.as_str(), s.value.as_str(), s.source)).collect()
    }

    #[test]
    fn topic_values_come_from_override_then_broker_then_default() {
        let config = config(&[("log.retention.ms", "1000")]);
        let mut overrides = BTreeMap::new();
        overrides.insert("retention.ms".to_string(), "5".to_string());
        overrides.insert("cleanup.policy".to_string(), "compact".to_string());

        let entries = topic_config_entries(&config, &overrides);
        assert_eq!(entries.len(), TOPIC_CONFIGS.len(), "every topic config is described");

        let retention = find(&entries, "retention.ms");
        assert_eq!((retention.value.as_str(), retention.source), ("5", ConfigSource::Topic));
        assert_eq!(
            sources(retention),
            vec![
                ("retention.ms", "5", ConfigSource::Topic),
                ("log.retention.ms", "1000", ConfigSource::StaticBroker),
                ("log.retention.ms", "604800000", ConfigSource::Default),
            ]
        );
        assert_eq!(retention.config_type, ConfigType::Long as i8);
        assert!(!retention.read_only && !retention.is_sensitive);

        let policy = find(&entries, "cleanup.policy");
        assert_eq!((policy.value.as_str(), policy.source), ("compact", ConfigSource::Topic));
        assert_eq!(policy.config_type, ConfigType::List as i8);

        let segment = find(&entries, "segment.ms");
        assert_eq!((segment.value.as_str(), segment.source), ("604800000", ConfigSource::Default));
        assert_eq!(sources(segment), vec![("log.roll.ms", "604800000", ConfigSource::Default)]);
    }

    /// Configs no broker setting supplies (Kafka 4.4's tiered-storage switches, throttled
    /// replicas, the share-group DLQ switch) have no default synonym, as Kafka answers them.
    #[test]
    fn topic_only_configs_have_no_broker_synonym() {
        let mut overrides = BTreeMap::new();
        overrides.insert("leader.replication.throttled.replicas".to_string(), "0:1".to_string());
        let entries = topic_config_entries(&config(&[]), &overrides);

        let remote = find(&entries, "remote.storage.enable");
        assert_eq!((remote.value.as_str(), remote.source), ("false", ConfigSource::Default));
        assert!(remote.synonyms.is_empty(), "{:?}", remote.synonyms);
        assert_eq!(remote.config_type, ConfigType::Boolean as i8);

        let throttled = find(&entries, "leader.replication.throttled.replicas");
        assert_eq!((throttled.value.as_str(), throttled.source), ("0:1", ConfigSource::Topic));
        assert_eq!(sources(throttled), vec![("leader.replication.throttled.replicas", "0:1", ConfigSource::Topic)]);

        let local = find(&entries, "local.retention.ms");
        assert_eq!(sources(local), vec![("log.local.retention.ms", "-2", ConfigSource::Default)]);
    }

    #[test]
    fn topic_without_override_takes_the_broker_setting() {
        let config = config(&[("log.retention.ms", "1000")]);
        let entries = topic_config_entries(&config, &BTreeMap::new());
        let retention = find(&entries, "retention.ms");
        assert_eq!((retention.value.as_str(), retention.source), ("1000", ConfigSource::StaticBroker));
        assert_eq!(retention.synonyms.first().map(|s| s.source), Some(ConfigSource::StaticBroker));
    }

    #[test]
    fn broker_entries_are_static_or_default_and_read_only() {
        let config = config(&[("num.partitions", "3"), ("log.segment.bytes", "2048")]);
        let entries = broker_config_entries(&config);
        let partitions = find(&entries, "num.partitions");
        assert_eq!((partitions.value.as_str(), partitions.source), ("3", ConfigSource::StaticBroker));
        assert_eq!(
            sources(partitions),
            vec![("num.partitions", "3", ConfigSource::StaticBroker), ("num.partitions", "1", ConfigSource::Default)]
        );
        let segment = find(&entries, "log.segment.bytes");
        assert_eq!((segment.value.as_str(), segment.source), ("2048", ConfigSource::StaticBroker));
        assert_eq!(segment.config_type, ConfigType::Int as i8);
        let roll = find(&entries, "log.roll.ms");
        assert_eq!(roll.source, ConfigSource::Default);
        assert!(entries.iter().all(|e| e.read_only));
        let mut names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        names.dedup();
        assert_eq!(names.len(), entries.len(), "each broker config is listed once");
    }

    #[test]
    fn every_broker_config_has_a_type() {
        for (name, _) in BROKER_DEFAULTS {
            assert_ne!(broker_config_type(name), CONFIG_TYPE_UNKNOWN, "{name} needs a config type");
        }
    }

    #[test]
    fn broker_resource_names_follow_kafka() {
        let config = config(&[("node.id", "7")]);
        assert_eq!(describe_broker(&config, ""), Ok(Vec::new()));
        assert!(describe_broker(&config, "7").is_ok_and(|e| !e.is_empty()));
        assert!(matches!(describe_broker(&config, "8"), Err((ResponseError::InvalidRequest, _))));
        assert!(matches!(describe_broker(&config, "seven"), Err((ResponseError::InvalidRequest, _))));
    }

    #[test]
    fn unknown_and_invalid_topics_are_resource_errors() {
        let config = config(&[]);
        let image = MetadataImage::default();
        assert!(matches!(describe_topic(&config, &image, "nope"), Err((ResponseError::UnknownTopicOrPartition, _))));
        assert!(matches!(describe_topic(&config, &image, "a/b"), Err((ResponseError::InvalidTopicException, _))));
    }

    #[test]
    fn configuration_keys_filter_and_ignore_unknown_names() {
        let config = config(&[]);
        let entries = topic_config_entries(&config, &BTreeMap::new());
        let keys = [StrBytes::from_static_str("retention.ms"), StrBytes::from_static_str("no.such.config")];
        let kept = filter_keys(entries.clone(), Some(&keys));
        assert_eq!(kept.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), vec!["retention.ms"]);
        assert_eq!(filter_keys(entries.clone(), None).len(), entries.len());
    }
}
