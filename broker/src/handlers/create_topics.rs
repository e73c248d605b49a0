//! CreateTopics (key 19), versions 2-7: creates topics through the controller, with the broker's
//! defaults for a partition count or replication factor of -1, explicit replica assignments, and
//! config overrides; `validate_only` checks without creating. Answers per topic: the error and its
//! message, the topic id (v7), and from v5 the partition count, replication factor and the
//! topic's effective configs as DescribeConfigs describes them.
//!
//! As in Kafka, a name given more than once in one request gets a single INVALID_REQUEST answer
//! and is not created, a config with a null value is INVALID_CONFIG, and `__cluster_metadata`
//! (the metadata log's name) cannot be created.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use kafka_protocol::messages::{ApiKey, CreateTopicsRequest, CreateTopicsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use sluice_controller::ops::topics::{CreateTopicSpec, CreatedTopic};
use uuid::Uuid;

use super::describe_configs::topic_config_entries;
use super::errors::controller_error;
use super::{Handler, RequestContext};
use crate::broker::Broker;
use crate::config::BrokerConfig;

pub struct CreateTopicsHandler;

/// First version whose answer carries partition count, replication factor and configs.
const CONFIGS_VERSION: i16 = 5;

/// The metadata log's name (its directory is `__cluster_metadata-0`); no topic may take it.
const CLUSTER_METADATA_TOPIC: &str = "__cluster_metadata";

/// Turns one requested topic into the controller's spec.
///
/// # Errors
/// INVALID_REQUEST for the metadata log's name; INVALID_CONFIG for a config with a null value; INVALID_REPLICA_ASSIGNMENT for a partition
/// assigned twice.
fn spec(topic: &CreatableTopic) -> Result<CreateTopicSpec, (ResponseError, String)> {
    if topic.name.0.as_str() == CLUSTER_METADATA_TOPIC {
        let message = format!("Creation of internal topic {CLUSTER_METADATA_TOPIC} is prohibited.");
        return Err((ResponseError::InvalidRequest, message));
    }
    let null_configs: Vec<&str> = topic.configs.iter().filter(|c| c.value.is_none()).map(|c| c.name.as_str()).collect();
    if !null_configs.is_empty() {
        let message = format!("Null value not supported for topic configs: {}", null_configs.join(","));
        return Err((ResponseError::InvalidConfig, message));
    }
    let mut assignments = BTreeMap::new();
    for a in &topic.assignments {
        let replicas = a.broker_ids.iter().map(|b| b.0).collect();
        if assignments.insert(a.partition_index, replicas).is_some() {
            let message = format!("Partition {} is assigned more than once.", a.partition_index);
            return Err((ResponseError::InvalidReplicaAssignment, message));
        }
    }
    // A name given twice keeps its last value, as Kafka's controller does.
    let configs = topic
        .configs
        .iter()
        .filter_map(|c| Some((c.name.as_str().to_string(), c.value.as_ref()?.as_str().to_string())))
        .collect();
    Ok(CreateTopicSpec {
        name: topic.name.0.as_str().to_string(),
        num_partitions: topic.num_partitions,
        replication_factor: topic.replication_factor,
        assignments,
        configs,
    })
}

fn error_result(name: TopicName, error: ResponseError, message: String) -> CreatableTopicResult {
    CreatableTopicResult::default()
        .with_name(name)
        .with_error_code(error.code())
        .with_error_message(Some(StrBytes::from_string(message)))
}

fn created_result(
    config: &BrokerConfig,
    version: i16,
    spec: &CreateTopicSpec,
    created: &CreatedTopic,
    validate_only: bool,
) -> CreatableTopicResult {
    // A dry run made no topic, so there is no id to report.
    let topic_id = if validate_only { Uuid::nil() } else { created.topic_id };
    let result = CreatableTopicResult::default()
        .with_name(TopicName(StrBytes::from_string(spec.name.clone())))
        .with_topic_id(topic_id)
        .with_error_message(None);
    if version < CONFIGS_VERSION {
        return result;
    }
    let configs = topic_config_entries(config, &spec.configs)
        .into_iter()
        .map(|e| {
            CreatableTopicConfigs::default()
                .with_name(StrBytes::from_string(e.name))
                .with_value(Some(StrBytes::from_string(e.value)))
                .with_read_only(e.read_only)
                .with_config_source(e.source as i8)
                .with_is_sensitive(e.is_sensitive)
        })
        .collect();
    result
        .with_num_partitions(created.num_partitions)
        .with_replication_factor(created.replication_factor)
        .with_configs(Some(configs))
}

/// Names that appear more than once in the request.
fn duplicate_names(topics: &[CreatableTopic]) -> BTreeSet<&str> {
    let mut seen = BTreeSet::new();
    topics.iter().map(|t| t.name.0.as_str()).filter(|n| !seen.insert(*n)).collect()
}

impl Handler for CreateTopicsHandler {
    type Request = CreateTopicsRequest;
    type Response = CreateTopicsResponse;
    const KEY: ApiKey = ApiKey::CreateTopics;
    const VERSIONS: (i16, i16) = (2, 7);

    async fn handle(
        broker: Arc<Broker>,
        ctx: RequestContext,
        request: CreateTopicsRequest,
    ) -> Option<CreateTopicsResponse> {
        let duplicates = duplicate_names(&request.topics);
        let mut answered = BTreeSet::new();
        // One slot per answer, in request order: an answer already known, or an index into `specs`.
        let mut slots: Vec<Result<usize, CreatableTopicResult>> = Vec::with_capacity(request.topics.len());
        let mut specs = Vec::with_capacity(request.topics.len());
        for topic in &request.topics {
            let name = topic.name.0.as_str();
            if duplicates.contains(name) {
                if answered.insert(name) {
                    let message = "Duplicate topic name.".to_string();
                    slots.push(Err(error_result(topic.name.clone(), ResponseError::InvalidRequest, message)));
                }
                continue;
            }
            match spec(topic) {
                Ok(spec) => {
                    slots.push(Ok(specs.len()));
                    specs.push(spec);
                }
                Err((error, message)) => slots.push(Err(error_result(topic.name.clone(), error, message))),
            }
        }
        let outcomes = broker.controller.create_topics(&specs, request.validate_only).await;
        let topics = slots
            .into_iter()
            .map(|slot| {
                let i = match slot {
                    Ok(i) => i,
                    Err(answer) => return answer,
                };
                // `i` was `specs.len()` when its spec was pushed, so it is in range.
                let spec = &specs[i];
                match outcomes.get(i) {
                    Some(Ok(created)) => {
                        created_result(&broker.config, ctx.api_version, spec, created, request.validate_only)
                    }
                    Some(Err(e)) => error_result(
                        TopicName(StrBytes::from_string(spec.name.clone())),
                        controller_error(e),
                        e.to_string(),
                    ),
                    None => {
                        let message = "the controller gave no answer for this topic".to_string();
                        error_result(
                            TopicName(StrBytes::from_string(spec.name.clone())),
                            ResponseError::UnknownServerError,
                            message,
                        )
                    }
                }
            })
            .collect();
        Some(CreateTopicsResponse::default().with_topics(topics))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::create_topics_request::{CreatableReplicaAssignment, CreatableTopicConfig};
    use kafka_protocol::messages::BrokerId;

    fn topic(name: &'static str) -> CreatableTopic {
        CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_static_str(name)))
            .with_num_partitions(-1)
            .with_replication_factor(-1)
    }

    fn config(name: &'static str, value: Option<&'static str>) -> CreatableTopicConfig {
        CreatableTopicConfig::default()
            .with_name(StrBytes::from_static_str(name))
            .with_value(value.map(StrBytes::from_static_str))
    }

    #[test]
    fn null_config_values_are_invalid_config() {
        let t = topic("t").with_configs(vec![config("retention.ms", Some("5")), config("segment.ms", None)]);
        assert!(matches!(spec(&t), Err((ResponseError::InvalidConfig, m)) if m.contains("segment.ms")));
    }

    #[test]
    fn spec_carries_assignments_and_configs() {
        let t = topic("t").with_configs(vec![config("retention.ms", Some("5"))]).with_assignments(vec![
            CreatableReplicaAssignment::default().with_partition_index(0).with_broker_ids(vec![BrokerId(1)]),
        ]);
        let s = spec(&t).expect("valid");
        assert_eq!((s.num_partitions, s.replication_factor), (-1, -1));
        assert_eq!(s.assignments.get(&0), Some(&vec![1]));
        assert_eq!(s.configs.get("retention.ms").map(String::as_str), Some("5"));
        let twice = topic("t").with_assignments(vec![
            CreatableReplicaAssignment::default().with_partition_index(0).with_broker_ids(vec![BrokerId(1)]),
            CreatableReplicaAssignment::default().with_partition_index(0).with_broker_ids(vec![BrokerId(1)]),
        ]);
        assert!(matches!(spec(&twice), Err((ResponseError::InvalidReplicaAssignment, _))));
    }

    #[test]
    fn duplicates_are_found() {
        let topics = vec![topic("a"), topic("b"), topic("a")];
        assert_eq!(duplicate_names(&topics).into_iter().collect::<Vec<_>>(), vec!["a"]);
    }
}
