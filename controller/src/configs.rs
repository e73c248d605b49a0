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

/// One topic config: its name, type, default, and the broker config that supplies its default.
#[derive(Debug, Clone, Copy)]
pub struct TopicConfigDef {
    pub name: &'static str,
    pub config_type: ConfigType,
    pub default: &'static str,
    pub broker_synonym: &'static str,
    /// Smallest accepted value for numeric configs.
    pub min: Option<i64>,
    /// Accepted values for enumerated string configs.
    pub choices: &'static [&'static str],
}

const fn def(
    name: &'static str,
    config_type: ConfigType,
    default: &'static str,
    broker_synonym: &'static str,
    min: Option<i64>,
) -> TopicConfigDef {
    TopicConfigDef { name, config_type, default, broker_synonym, min, choices: &[] }
}

const LONG_MAX: &str = "9223372036854775807";

/// Every topic config Sluice knows, sorted by name. `flush.messages` defaults to 1: Sluice
/// acknowledges a write only after it is fsynced (group commit); set it higher for Kafka's
/// page-cache-only behaviour.
pub const TOPIC_CONFIGS: &[TopicConfigDef] = &[
    TopicConfigDef {
        choices: &["delete", "compact", "compact,delete", "delete,compact"],
        ..def("cleanup.policy", ConfigType::List, "delete", "log.cleanup.policy", None)
    },
    // Sluice stores batches exactly as produced and never recompresses them, so only
    // `producer` (Kafka's default) is accepted until recompression exists.
    TopicConfigDef {
        choices: &["producer"],
        ..def("compression.type", ConfigType::String, "producer", "compression.type", None)
    },
    def("delete.retention.ms", ConfigType::Long, "86400000", "log.cleaner.delete.retention.ms", Some(0)),
    def("file.delete.delay.ms", ConfigType::Long, "60000", "log.segment.delete.delay.ms", Some(0)),
    def("flush.messages", ConfigType::Long, "1", "log.flush.interval.messages", Some(1)),
    def("flush.ms", ConfigType::Long, LONG_MAX, "log.flush.interval.ms", Some(0)),
    def("index.interval.bytes", ConfigType::Int, "4096", "log.index.interval.bytes", Some(0)),
    def("max.compaction.lag.ms", ConfigType::Long, LONG_MAX, "log.cleaner.max.compaction.lag.ms", Some(1)),
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
            match def.min {
                Some(min) if parsed < min => Err(format!("Value must be at least {min}")),
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
}
