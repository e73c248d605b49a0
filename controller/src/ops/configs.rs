//! Config operations: AlterConfigs (replace all overrides) and IncrementalAlterConfigs.

use std::collections::BTreeMap;

use super::OpResult;
use crate::configs::{topic_config, validate_topic_config, ConfigType};
use crate::error::ControllerError;
use crate::image::MetadataImage;
use crate::records::{ConfigResource, MetadataRecord};

/// One IncrementalAlterConfigs operation (Kafka's op codes 0..=3).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum AlterOp {
    Set(String),
    Delete,
    Append(String),
    Subtract(String),
}

fn topic_exists(image: &MetadataImage, name: &str) -> Result<(), ControllerError> {
    image.topic_by_name(name).map(|_| ()).ok_or_else(|| ControllerError::UnknownTopicOrPartition(name.to_string()))
}

fn config_record(topic: &str, name: &str, value: Option<String>) -> MetadataRecord {
    MetadataRecord::Config {
        resource: ConfigResource::Topic,
        resource_name: topic.to_string(),
        name: name.to_string(),
        value,
    }
}

/// Replaces all of a topic's overrides with `configs` (legacy AlterConfigs semantics).
///
/// # Errors
/// UNKNOWN_TOPIC_OR_PARTITION, INVALID_CONFIG.
pub fn alter_topic_configs(
    image: &MetadataImage,
    topic: &str,
    configs: &BTreeMap<String, String>,
) -> Result<OpResult<()>, ControllerError> {
    topic_exists(image, topic)?;
    for (name, value) in configs {
        validate_topic_config(name, value).map_err(ControllerError::InvalidConfig)?;
    }
    let current = image.topic_configs(topic);
    let mut records: Vec<MetadataRecord> = current
        .keys()
        .filter(|name| !configs.contains_key(*name))
        .map(|name| config_record(topic, name, None))
        .collect();
    records.extend(configs.iter().map(|(n, v)| config_record(topic, n, Some(v.clone()))));
    Ok(OpResult { records, response: () })
}

/// Applies incremental changes to a topic's overrides.
///
/// # Errors
/// UNKNOWN_TOPIC_OR_PARTITION, INVALID_CONFIG (unknown name, bad value, APPEND/SUBTRACT on a
/// non-list config), INVALID_REQUEST (the same config named twice).
pub fn incremental_alter_topic_configs(
    image: &MetadataImage,
    topic: &str,
    ops: &[(String, AlterOp)],
) -> Result<OpResult<()>, ControllerError> {
    topic_exists(image, topic)?;
    let mut seen = std::collections::BTreeSet::new();
    let current = image.topic_configs(topic);
    let mut records = Vec::new();
    for (name, op) in ops {
        if !seen.insert(name.clone()) {
            return Err(ControllerError::InvalidRequest(format!("Duplicate config {name} in request")));
        }
        let def = topic_config(name)
            .ok_or_else(|| ControllerError::InvalidConfig(format!("Unknown topic config name: {name}")))?;
        let existing = current.get(name).map_or(def.default, String::as_str);
        let value = match op {
            AlterOp::Set(v) => Some(v.clone()),
            AlterOp::Delete => None,
            AlterOp::Append(_) | AlterOp::Subtract(_) if def.config_type != ConfigType::List => {
                return Err(ControllerError::InvalidConfig(format!(
                    "Config {name} is not a list; APPEND/SUBTRACT need a list config"
                )));
            }
            AlterOp::Append(v) => Some(list_append(existing, v)),
            AlterOp::Subtract(v) => Some(list_subtract(existing, v)),
        };
        if let Some(v) = &value {
            validate_topic_config(name, v).map_err(ControllerError::InvalidConfig)?;
        }
        records.push(config_record(topic, name, value));
    }
    Ok(OpResult { records, response: () })
}

fn list_items(list: &str) -> Vec<String> {
    list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
}

fn list_append(existing: &str, add: &str) -> String {
    let mut items = list_items(existing);
    for item in list_items(add) {
        if !items.contains(&item) {
            items.push(item);
        }
    }
    items.join(",")
}

fn list_subtract(existing: &str, remove: &str) -> String {
    let remove = list_items(remove);
    list_items(existing).into_iter().filter(|i| !remove.contains(i)).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn image() -> MetadataImage {
        let mut image = MetadataImage::default();
        image.apply(&MetadataRecord::Topic { name: "t".into(), topic_id: Uuid::from_u128(1) });
        image.apply(&config_record("t", "retention.ms", Some("100".into())));
        image
    }

    #[test]
    fn alter_replaces_and_incremental_edits() {
        let mut image = image();
        let mut full = BTreeMap::new();
        full.insert("segment.ms".to_string(), "5000".to_string());
        for r in alter_topic_configs(&image, "t", &full).expect("alter").records {
            image.apply(&r);
        }
        assert_eq!(image.topic_configs("t"), full);
        let ops = vec![
            ("segment.ms".to_string(), AlterOp::Delete),
            ("cleanup.policy".to_string(), AlterOp::Append("compact".into())),
        ];
        for r in incremental_alter_topic_configs(&image, "t", &ops).expect("incremental").records {
            image.apply(&r);
        }
        let configs = image.topic_configs("t");
        assert_eq!(configs.get("segment.ms"), None);
        assert_eq!(configs.get("cleanup.policy").map(String::as_str), Some("delete,compact"));
        let bad = vec![("retention.ms".to_string(), AlterOp::Set("never".into()))];
        assert!(matches!(incremental_alter_topic_configs(&image, "t", &bad), Err(ControllerError::InvalidConfig(_))));
        assert!(matches!(alter_topic_configs(&image, "nope", &full), Err(ControllerError::UnknownTopicOrPartition(_))));
    }
}
