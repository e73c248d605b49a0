//! Topic config definitions: Kafka's names, types, defaults and broker synonyms.
//!
//! One table drives validation (CreateTopics, AlterConfigs) and DescribeConfigs, so a config that
//! can be set is also one that can be described, with the same default a Kafka operator expects.

/// Kafka's config types as DescribeConfigs (v3+) reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    Boolean = 1,
    String = 2,
    Int = 3,
    Long = 5,
    Double = 6,
    List = 7,
}

/// A rule a topic config's value must follow beyond its type, range and choices; the error is
/// Kafka's message for the refusal.
pub type ValueCheck = fn(&str) -> Result<(), String>;

/// One topic config: its name, type, default, and the broker config that supplies its default.
#[derive(Debug, Clone, Copy)]
pub struct TopicConfigDef {
    pub name: &'static str,
    pub config_type: ConfigType,
    pub default: &'static str,
    /// The broker config that supplies the default, if any (Kafka has none for some topic
    /// configs, e.g. `remote.storage.enable`).
    pub broker_synonym: Option<&'static str>,
    /// Smallest accepted value for numeric configs.
    pub min: Option<i64>,
    /// Largest accepted value for numeric configs.
    pub max: Option<i64>,
    /// Accepted values for enumerated string configs.
    pub choices: &'static [&'static str],
    /// A rule beyond type, range and choices, with Kafka's message when it refuses a value.
    pub check: Option<ValueCheck>,
}

const fn def(
    name: &'static str,
    config_type: ConfigType,
    default: &'static str,
    broker_synonym: &'static str,
    min: Option<i64>,
) -> TopicConfigDef {
    TopicConfigDef {
        name,
        config_type,
        default,
        broker_synonym: Some(broker_synonym),
        min,
        max: None,
        choices: &[],
        check: None,
    }
}

/// A topic config that no broker config supplies a default for.
const fn topic_only(name: &'static str, config_type: ConfigType, default: &'static str) -> TopicConfigDef {
    TopicConfigDef { broker_synonym: None, ..def(name, config_type, default, "", None) }
}

/// A numeric config accepted within `[min, max]`, its broker synonym having the same name.
const fn ranged(
    name: &'static str,
    config_type: ConfigType,
    default: &'static str,
    min: i64,
    max: i64,
) -> TopicConfigDef {
    TopicConfigDef { max: Some(max), ..def(name, config_type, default, name, Some(min)) }
}

/// `compression.gzip.level`: 1 to 9, or -1 for zlib's default.
fn gzip_level(value: &str) -> Result<(), String> {
    match value.trim().parse::<i32>() {
        Ok(-1 | 1..=9) => Ok(()),
        _ => Err("Value must be between 1 and 9 or equal to -1".into()),
    }
}

/// `leader/follower.replication.throttled.replicas`: `*` or `partition:broker` pairs.
fn throttled_replicas(value: &str) -> Result<(), String> {
    let items: Vec<&str> = value.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    let pair = |item: &&str| {
        item.split_once(':').is_some_and(|(p, b)| p.trim().parse::<u32>().is_ok() && b.trim().parse::<u32>().is_ok())
    };
    if items == ["*"] || items.iter().all(pair) {
        Ok(())
    } else {
        Err("must be the literal '*' or a list of replicas in the following format: \
             [partitionId]:[brokerId],[partitionId]:[brokerId],..."
            .into())
    }
}

/// `remote.storage.enable`: Sluice has no tiered storage, so only `false` is accepted, with the
/// message Kafka gives when its broker has tiered storage disabled.
fn no_tiered_storage(value: &str) -> Result<(), String> {
    if value.trim().eq_ignore_ascii_case("true") {
        Err("Tiered Storage functionality is disabled in the broker. \
             Topic cannot be configured with remote log storage."
            .into())
    } else {
        Ok(())
    }
}

const LONG_MAX: &str = "9223372036854775807";

/// Every topic config Sluice knows, sorted by name: the same set Kafka 4.4 describes.
/// `flush.messages` defaults to 1: Sluice acknowledges a write only after it is fsynced (group
/// commit); set it higher for Kafka's page-cache-only behaviour.
///
/// Accepted and described, but with nothing to act on in Sluice (as in a Kafka broker without
/// that feature): the compression levels (Sluice never recompresses), the replication throttles
/// (no throttle rates), `errors.deadletterqueue.group.enable` (no share groups yet),
/// `max.decompressed.message.bytes` (Sluice never decompresses a batch), and the tiered-storage
/// configs (`local.retention.*`, `remote.*`; `remote.storage.enable` only as `false`).
pub const TOPIC_CONFIGS: &[TopicConfigDef] = &[
    TopicConfigDef {
        choices: &["delete", "compact", "compact,delete", "delete,compact"],
        ..def("cleanup.policy", ConfigType::List, "delete", "log.cleanup.policy", None)
    },
    TopicConfigDef {
        check: Some(gzip_level),
        ..def("compression.gzip.level", ConfigType::Int, "-1", "compression.gzip.level", None)
    },
    ranged("compression.lz4.level", ConfigType::Int, "9", 1, 17),
    // Sluice stores batches exactly as produced and never recompresses them, so only
    // `producer` (Kafka's default) is accepted until recompression exists.
    TopicConfigDef {
        choices: &["producer"],
        ..def("compression.type", ConfigType::String, "producer", "compression.type", None)
    },
    ranged("compression.zstd.level", ConfigType::Int, "3", -131_072, 22),
    def("delete.retention.ms", ConfigType::Long, "86400000", "log.cleaner.delete.retention.ms", Some(0)),
    topic_only("errors.deadletterqueue.group.enable", ConfigType::Boolean, "false"),
    def("file.delete.delay.ms", ConfigType::Long, "60000", "log.segment.delete.delay.ms", Some(0)),
    def("flush.messages", ConfigType::Long, "1", "log.flush.interval.messages", Some(1)),
    def("flush.ms", ConfigType::Long, LONG_MAX, "log.flush.interval.ms", Some(0)),
    TopicConfigDef {
        check: Some(throttled_replicas),
        ..topic_only("follower.replication.throttled.replicas", ConfigType::List, "")
    },
    def("index.interval.bytes", ConfigType::Int, "4096", "log.index.interval.bytes", Some(0)),
    TopicConfigDef {
        check: Some(throttled_replicas),
        ..topic_only("leader.replication.throttled.replicas", ConfigType::List, "")
    },
    def("local.retention.bytes", ConfigType::Long, "-2", "log.local.retention.bytes", Some(-2)),
    def("local.retention.ms", ConfigType::Long, "-2", "log.local.retention.ms", Some(-2)),
    def("max.compaction.lag.ms", ConfigType::Long, LONG_MAX, "log.cleaner.max.compaction.lag.ms", Some(1)),
    ranged("max.decompressed.message.bytes", ConfigType::Int, "2147483639", 1, 2_147_483_639),
    def("max.message.bytes", ConfigType::Int, "1048588", "message.max.bytes", Some(0)),
    def("message.timestamp.after.max.ms", ConfigType::Long, "3600000", "log.message.timestamp.after.max.ms", Some(0)),
    def("message.timestamp.before.max.ms", ConfigType::Long, LONG_MAX, "log.message.timestamp.before.max.ms", Some(0)),
    TopicConfigDef {
        choices: &["CreateTime", "LogAppendTime"],
        ..def("message.timestamp.type", ConfigType::String, "CreateTime", "log.message.timestamp.type", None)
    },
    def("min.cleanable.dirty.ratio", ConfigType::Double, "0.5", "log.cleaner.min.cleanable.ratio", None),
    def("min.compaction.lag.ms", ConfigType::Long, "0", "log.cleaner.min.compaction.lag.ms", Some(0)),
    def("min.insync.replicas", ConfigType::Int, "1", "min.insync.replicas", Some(1)),
    def("preallocate", ConfigType::Boolean, "false", "log.preallocate", None),
    def("remote.copy.lag.bytes", ConfigType::Long, "-1", "log.remote.copy.lag.bytes", Some(-1)),
    def("remote.copy.lag.ms", ConfigType::Long, "0", "log.remote.copy.lag.ms", Some(-1)),
    topic_only("remote.log.copy.disable", ConfigType::Boolean, "false"),
    topic_only("remote.log.delete.on.disable", ConfigType::Boolean, "false"),
    TopicConfigDef {
        check: Some(no_tiered_storage),
        ..topic_only("remote.storage.enable", ConfigType::Boolean, "false")
    },
    def("retention.bytes", ConfigType::Long, "-1", "log.retention.bytes", None),
    def("retention.ms", ConfigType::Long, "604800000", "log.retention.ms", Some(-1)),
    def("segment.bytes", ConfigType::Int, "1073741824", "log.segment.bytes", Some(14)),
    def("segment.index.bytes", ConfigType::Int, "10485760", "log.index.size.max.bytes", Some(4)),
    def("segment.jitter.ms", ConfigType::Long, "0", "log.roll.jitter.ms", Some(0)),
    def("segment.ms", ConfigType::Long, "604800000", "log.roll.ms", Some(1)),
    def("unclean.leader.election.enable", ConfigType::Boolean, "false", "unclean.leader.election.enable", None),
];

/// The definition of topic config `name`, if Sluice knows it.
pub fn topic_config(name: &str) -> Option<&'static TopicConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.name == name)
}

/// Checks that `value` is acceptable for topic config `name`.
///
/// # Errors
/// A message naming the config and why the value is refused (Kafka's INVALID_CONFIG).
pub fn validate_topic_config(name: &str, value: &str) -> Result<(), String> {
    let def = topic_config(name).ok_or_else(|| format!("Unknown topic config name: {name}"))?;
    validate_value(def, value).map_err(|why| format!("Invalid value {value} for configuration {name}: {why}"))
}

fn validate_value(def: &TopicConfigDef, value: &str) -> Result<(), String> {
    validate_type(def, value)?;
    def.check.map_or(Ok(()), |check| check(value))
}

fn validate_type(def: &TopicConfigDef, value: &str) -> Result<(), String> {
    match def.config_type {
        ConfigType::Boolean => match value.to_ascii_lowercase().as_str() {
            "true" | "false" => Ok(()),
            _ => Err("Expected value to be either true or false".into()),
        },
        ConfigType::Int | ConfigType::Long => {
            let parsed: i64 = if def.config_type == ConfigType::Int {
                value.trim().parse::<i32>().map(i64::from).map_err(|_| "Not a number of type INT".to_string())?
            } else {
                value.trim().parse::<i64>().map_err(|_| "Not a number of type LONG".to_string())?
            };
            match (def.min, def.max) {
                (Some(min), _) if parsed < min => Err(format!("Value must be at least {min}")),
                (_, Some(max)) if parsed > max => Err(format!("Value must be no more than {max}")),
                _ => Ok(()),
            }
        }
        ConfigType::Double => value.trim().parse::<f64>().map(|_| ()).map_err(|_| "Not a number of type DOUBLE".into()),
        ConfigType::String | ConfigType::List => {
            if def.choices.is_empty() || def.choices.contains(&value.trim()) {
                Ok(())
            } else {
                Err(format!("String must be one of: {}", def.choices.join(", ")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_defaults_validate() {
        let names: Vec<_> = TOPIC_CONFIGS.iter().map(|d| d.name).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted);
        for d in TOPIC_CONFIGS {
            assert_eq!(validate_value(d, d.default), Ok(()), "{}", d.name);
        }
    }

    #[test]
    fn bad_values_are_refused_with_the_config_name() {
        assert!(validate_topic_config("retention.ms", "soon").is_err_and(|e| e.contains("retention.ms")));
        assert!(validate_topic_config("cleanup.policy", "shred").is_err());
        assert!(validate_topic_config("no.such.config", "1").is_err());
        assert!(validate_topic_config("segment.bytes", "3000000000").is_err());
        assert_eq!(validate_topic_config("message.timestamp.type", "LogAppendTime"), Ok(()));
    }

    /// The values Kafka 4.4.0 refuses and accepts for the configs Sluice only describes (each
    /// tried against the reference broker with kafka-configs --alter).
    #[test]
    fn described_only_configs_follow_kafkas_rules() {
        let refused = [
            ("compression.gzip.level", "0", "between 1 and 9 or equal to -1"),
            ("compression.gzip.level", "10", "between 1 and 9 or equal to -1"),
            ("compression.lz4.level", "18", "no more than 17"),
            ("compression.zstd.level", "23", "no more than 22"),
            ("compression.zstd.level", "-131073", "at least -131072"),
            ("max.decompressed.message.bytes", "0", "at least 1"),
            ("max.decompressed.message.bytes", "2147483647", "no more than 2147483639"),
            ("local.retention.ms", "-3", "at least -2"),
            ("local.retention.bytes", "-3", "at least -2"),
            ("remote.copy.lag.bytes", "-2", "at least -1"),
            ("remote.copy.lag.ms", "-5", "at least -1"),
            ("leader.replication.throttled.replicas", "garbage", "[partitionId]:[brokerId]"),
            ("follower.replication.throttled.replicas", "0:1,x", "[partitionId]:[brokerId]"),
            ("remote.storage.enable", "true", "Tiered Storage functionality is disabled"),
            ("errors.deadletterqueue.group.enable", "maybe", "true or false"),
        ];
        for (name, value, why) in refused {
            let err = validate_topic_config(name, value).expect_err(name);
            assert!(err.contains(name) && err.contains(why), "{name}={value}: {err}");
        }
        let accepted = [
            ("compression.gzip.level", "-1"),
            ("compression.gzip.level", "5"),
            ("compression.lz4.level", "1"),
            ("compression.zstd.level", "-5"),
            ("max.decompressed.message.bytes", "100"),
            ("leader.replication.throttled.replicas", "0:1"),
            ("leader.replication.throttled.replicas", "*"),
            ("follower.replication.throttled.replicas", "0:1, 1:2"),
            ("local.retention.ms", "1000"),
            ("remote.copy.lag.ms", "-1"),
            ("remote.storage.enable", "false"),
            ("remote.log.copy.disable", "true"),
            ("errors.deadletterqueue.group.enable", "true"),
        ];
        for (name, value) in accepted {
            assert_eq!(validate_topic_config(name, value), Ok(()), "{name}={value}");
        }
    }
}
