//! IncrementalAlterConfigs (key 44), versions 0-1: edits a topic's config overrides one config at
//! a time with Kafka's operations 0 SET, 1 DELETE, 2 APPEND and 3 SUBTRACT (the last two on list
//! configs); `validate_only` checks without changing anything. An unknown operation, or a null
//! value for anything but DELETE, makes that resource INVALID_REQUEST, as in Kafka.
//!
//! Sluice has no dynamic broker configs yet, so a BROKER resource is INVALID_REQUEST; so is any
//! other resource type, and a resource named twice in one request.

use std::collections::BTreeSet;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{ApiKey, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};
use kafka_protocol::protocol::StrBytes;
use sluice_controller::ops::configs::AlterOp;

use super::alter_configs::{duplicate_resources, non_topic_refusal};
use super::describe_configs::RESOURCE_TOPIC;
use super::{Handler, RequestContext};
use crate::broker::Broker;

pub struct IncrementalAlterConfigsHandler;

const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

/// One requested change as the controller's operation.
///
/// # Errors
/// A message for INVALID_REQUEST: an unknown operation code, or no value where one is needed.
fn alter_op(config: &AlterableConfig) -> Result<(String, AlterOp), String> {
    let name = config.name.as_str().to_string();
    let value = || {
        config
            .value
            .as_ref()
            .map(|v| v.as_str().to_string())
            .ok_or_else(|| format!("Null value not supported for : {name}"))
    };
    let op = match config.config_operation {
        OP_SET => AlterOp::Set(value()?),
        OP_DELETE => AlterOp::Delete,
        OP_APPEND => AlterOp::Append(value()?),
        OP_SUBTRACT => AlterOp::Subtract(value()?),
        other => return Err(format!("Unknown operation type {other} for config {name}")),
    };
    Ok((name, op))
}

fn alter_ops(resource: &AlterConfigsResource) -> Result<Vec<(String, AlterOp)>, (ResponseError, String)> {
    resource.configs.iter().map(alter_op).collect::<Result<_, _>>().map_err(|m| (ResponseError::InvalidRequest, m))
}

fn answer(resource_type: i8, name: &StrBytes, error: Option<(ResponseError, String)>) -> AlterConfigsResourceResponse {
    let (code, message) = error.map_or((0, None), |(e, m)| (e.code(), Some(StrBytes::from_string(m))));
    AlterConfigsResourceResponse::default()
        .with_resource_type(resource_type)
        .with_resource_name(name.clone())
        .with_error_code(code)
        .with_error_message(message)
}

impl Handler for IncrementalAlterConfigsHandler {
    type Request = IncrementalAlterConfigsRequest;
    type Response = IncrementalAlterConfigsResponse;
    const KEY: ApiKey = ApiKey::IncrementalAlterConfigs;
    const VERSIONS: (i16, i16) = (0, 1);

    async fn handle(
        broker: Arc<Broker>,
        _ctx: RequestContext,
        request: IncrementalAlterConfigsRequest,
    ) -> Option<IncrementalAlterConfigsResponse> {
        let duplicates =
            duplicate_resources(request.resources.iter().map(|r| (r.resource_type, r.resource_name.as_str())));
        let mut refused_duplicates = BTreeSet::new();
        let mut changes = Vec::new();
        // One slot per answer, in request order: an answer already known, or an index into `changes`.
        let mut slots: Vec<Result<usize, AlterConfigsResourceResponse>> = Vec::with_capacity(request.resources.len());
        for resource in &request.resources {
            let (resource_type, name) = (resource.resource_type, &resource.resource_name);
            if duplicates.contains(&(resource_type, name.as_str())) {
                if refused_duplicates.insert((resource_type, name.as_str())) {
                    let error = (ResponseError::InvalidRequest, "Duplicate resource.".to_string());
                    slots.push(Err(answer(resource_type, name, Some(error))));
                }
                continue;
            }
            if resource_type != RESOURCE_TOPIC {
                slots.push(Err(answer(resource_type, name, Some(non_topic_refusal(resource_type)))));
                continue;
            }
            match alter_ops(resource) {
                Ok(ops) => {
                    slots.push(Ok(changes.len()));
                    changes.push((name.as_str().to_string(), ops));
                }
                Err(error) => slots.push(Err(answer(resource_type, name, Some(error)))),
            }
        }
        let outcomes = broker.controller.incremental_alter_topic_configs(&changes, request.validate_only).await;
        let names: Vec<String> = changes.iter().map(|(name, _)| name.clone()).collect();
        let responses =
            super::slots::merge(slots, &names, &outcomes, |name, error| answer(RESOURCE_TOPIC, name, error));
        Some(IncrementalAlterConfigsResponse::default().with_responses(responses))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(name: &'static str, op: i8, value: Option<&'static str>) -> AlterableConfig {
        AlterableConfig::default()
            .with_name(StrBytes::from_static_str(name))
            .with_config_operation(op)
            .with_value(value.map(StrBytes::from_static_str))
    }

    #[test]
    fn op_codes_map_to_controller_ops() {
        assert_eq!(
            alter_op(&config("retention.ms", 0, Some("5"))),
            Ok(("retention.ms".into(), AlterOp::Set("5".into())))
        );
        assert_eq!(alter_op(&config("retention.ms", 1, None)), Ok(("retention.ms".into(), AlterOp::Delete)));
        assert_eq!(alter_op(&config("retention.ms", 1, Some("ignored"))), Ok(("retention.ms".into(), AlterOp::Delete)));
        assert_eq!(
            alter_op(&config("cleanup.policy", 2, Some("compact"))),
            Ok(("cleanup.policy".into(), AlterOp::Append("compact".into())))
        );
        assert_eq!(
            alter_op(&config("cleanup.policy", 3, Some("delete"))),
            Ok(("cleanup.policy".into(), AlterOp::Subtract("delete".into())))
        );
    }

    #[test]
    fn unknown_ops_and_missing_values_are_invalid_requests() {
        assert!(alter_op(&config("retention.ms", 4, Some("5"))).is_err_and(|m| m.contains("Unknown operation type 4")));
        assert!(alter_op(&config("retention.ms", -1, Some("5"))).is_err());
        for op in [OP_SET, OP_APPEND, OP_SUBTRACT] {
            assert!(alter_op(&config("retention.ms", op, None)).is_err_and(|m| m.contains("Null value")), "op {op}");
        }
        let resource = AlterConfigsResource::default()
            .with_configs(vec![config("retention.ms", 0, Some("5")), config("segment.ms", 9, Some("1"))]);
        assert!(matches!(alter_ops(&resource), Err((ResponseError::InvalidRequest, _))));
    }
}
