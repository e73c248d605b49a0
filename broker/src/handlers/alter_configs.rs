//! AlterConfigs (key 33), versions 0-2: replaces all of a topic's config overrides with the
//! request's set (Kafka's legacy, non-incremental semantics: a config left out returns to its
//! default). `validate_only` checks without changing anything. A config with a null value is left
//! out of the new set, as Kafka's controller does.
//!
//! Sluice has no dynamic broker configs yet, so a BROKER resource is INVALID_REQUEST; so is any
//! other resource type, and a resource named twice in one request (Kafka's "Duplicate resource.").

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_configs_request::AlterConfigsResource;
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse, ApiKey};
use kafka_protocol::protocol::StrBytes;

use super::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use super::{Handler, RequestContext};
use crate::broker::Broker;

pub struct AlterConfigsHandler;

/// Why a resource that is not a topic cannot be altered (shared with IncrementalAlterConfigs).
pub fn non_topic_refusal(resource_type: i8) -> (ResponseError, String) {
    let message = if resource_type == RESOURCE_BROKER {
        "dynamic broker configs are not supported yet".to_string()
    } else {
        format!("Unsupported resource type: {resource_type}")
    };
    (ResponseError::InvalidRequest, message)
}

/// The (type, name) pairs that appear more than once in a request.
pub fn duplicate_resources<'a>(resources: impl Iterator<Item = (i8, &'a str)>) -> BTreeSet<(i8, &'a str)> {
    let mut seen = BTreeSet::new();
    resources.filter(|r| !seen.insert(*r)).collect()
}

fn answer(resource_type: i8, name: &StrBytes, error: Option<(ResponseError, String)>) -> AlterConfigsResourceResponse {
    let (code, message) = error.map_or((0, None), |(e, m)| (e.code(), Some(StrBytes::from_string(m))));
    AlterConfigsResourceResponse::default()
        .with_resource_type(resource_type)
        .with_resource_name(name.clone())
        .with_error_code(code)
        .with_error_message(message)
}

/// The topic's new override set: every config with a value (the last one wins for a name given twice).
fn new_overrides(resource: &AlterConfigsResource) -> BTreeMap<String, String> {
    resource
        .configs
        .iter()
        .filter_map(|c| Some((c.name.as_str().to_string(), c.value.as_ref()?.as_str().to_string())))
        .collect()
}

impl Handler for AlterConfigsHandler {
    type Request = AlterConfigsRequest;
    type Response = AlterConfigsResponse;
    const KEY: ApiKey = ApiKey::AlterConfigs;
    const VERSIONS: (i16, i16) = (0, 2);

    async fn handle(
        broker: Arc<Broker>,
        _ctx: RequestContext,
        request: AlterConfigsRequest,
    ) -> Option<AlterConfigsResponse> {
        let duplicates =
            duplicate_resources(request.resources.iter().map(|r| (r.resource_type, r.resource_name.as_str())));
        let mut refused_duplicates = BTreeSet::new();
        let mut changes = Vec::new();
        // One slot per answer, in request order: an answer already known, or an index into `changes`.
        let mut slots: Vec<Result<usize, AlterConfigsResourceResponse>> = Vec::with_capacity(request.resources.len());
        for resource in &request.resources {
            let key = (resource.resource_type, resource.resource_name.as_str());
            if duplicates.contains(&key) {
                if refused_duplicates.insert(key) {
                    let error = (ResponseError::InvalidRequest, "Duplicate resource.".to_string());
                    slots.push(Err(answer(resource.resource_type, &resource.resource_name, Some(error))));
                }
                continue;
            }
            if resource.resource_type != RESOURCE_TOPIC {
                let error = non_topic_refusal(resource.resource_type);
                slots.push(Err(answer(resource.resource_type, &resource.resource_name, Some(error))));
                continue;
            }
            slots.push(Ok(changes.len()));
            changes.push((resource.resource_name.as_str().to_string(), new_overrides(resource)));
        }
        let outcomes = broker.controller.alter_topic_configs(&changes, request.validate_only).await;
        let names: Vec<String> = changes.iter().map(|(name, _)| name.clone()).collect();
        let responses =
            super::slots::merge(slots, &names, &outcomes, |name, error| answer(RESOURCE_TOPIC, name, error));
        Some(AlterConfigsResponse::default().with_responses(responses))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::alter_configs_request::AlterableConfig;

    #[test]
    fn null_values_are_left_out_and_the_last_value_wins() {
        let config = |name: &'static str, value: Option<&'static str>| {
            AlterableConfig::default()
                .with_name(StrBytes::from_static_str(name))
                .with_value(value.map(StrBytes::from_static_str))
        };
        let resource = AlterConfigsResource::default().with_configs(vec![
            config("retention.ms", Some("1")),
            config("segment.ms", None),
            config("retention.ms", Some("2")),
        ]);
        let overrides = new_overrides(&resource);
        assert_eq!(overrides.len(), 1);
        assert_eq!(overrides.get("retention.ms").map(String::as_str), Some("2"));
    }

    #[test]
    fn duplicates_and_non_topic_resources() {
        let dups = duplicate_resources([(2, "a"), (4, "a"), (2, "a"), (2, "b")].into_iter());
        assert_eq!(dups.into_iter().collect::<Vec<_>>(), vec![(2, "a")]);
        assert_eq!(non_topic_refusal(RESOURCE_BROKER).0, ResponseError::InvalidRequest);
        assert!(non_topic_refusal(RESOURCE_BROKER).1.contains("not supported yet"));
        assert_eq!(non_topic_refusal(8).0, ResponseError::InvalidRequest);
    }
}
