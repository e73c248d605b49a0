//! CreatePartitions (key 37), versions 0-3: grows topics to a new partition count, placed by the
//! controller or by the request's assignments (one replica list per new partition);
//! `validate_only` checks without growing. Every topic of the request is echoed in the answer
//! (clients wait for each one); a name given more than once gets one INVALID_REQUEST answer and
//! is not grown, as in Kafka.

use std::collections::BTreeSet;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{ApiKey, CreatePartitionsRequest, CreatePartitionsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use sluice_controller::controller::PartitionGrowth;

use super::errors::controller_error;
use super::{Handler, RequestContext};
use crate::broker::Broker;

pub struct CreatePartitionsHandler;

fn answer(name: TopicName, error: Option<(ResponseError, String)>) -> CreatePartitionsTopicResult {
    let (code, message) = error.map_or((0, None), |(e, m)| (e.code(), Some(StrBytes::from_string(m))));
    CreatePartitionsTopicResult::default().with_name(name).with_error_code(code).with_error_message(message)
}

fn growth(topic: &CreatePartitionsTopic) -> PartitionGrowth {
    PartitionGrowth {
        topic: topic.name.0.as_str().to_string(),
        count: topic.count,
        assignments: topic
            .assignments
            .as_ref()
            .map(|a| a.iter().map(|p| p.broker_ids.iter().map(|b| b.0).collect()).collect()),
    }
}

/// Splits the request into growths for the controller and, for names given more than once,
/// one INVALID_REQUEST answer each.
fn split(topics: &[CreatePartitionsTopic]) -> (Vec<PartitionGrowth>, Vec<CreatePartitionsTopicResult>) {
    let mut seen = BTreeSet::new();
    let duplicates: BTreeSet<&str> = topics.iter().map(|t| t.name.0.as_str()).filter(|n| !seen.insert(*n)).collect();
    let growths = topics.iter().filter(|t| !duplicates.contains(t.name.0.as_str())).map(growth).collect();
    let refused = duplicates
        .iter()
        .map(|n| {
            let name = TopicName(StrBytes::from_string(n.to_string()));
            answer(name, Some((ResponseError::InvalidRequest, "Duplicate topic name.".to_string())))
        })
        .collect();
    (growths, refused)
}

impl Handler for CreatePartitionsHandler {
    type Request = CreatePartitionsRequest;
    type Response = CreatePartitionsResponse;
    const KEY: ApiKey = ApiKey::CreatePartitions;
    const VERSIONS: (i16, i16) = (0, 3);

    async fn handle(
        broker: Arc<Broker>,
        _ctx: RequestContext,
        request: CreatePartitionsRequest,
    ) -> Option<CreatePartitionsResponse> {
        let (growths, refused) = split(&request.topics);
        let outcomes = broker.controller.create_partitions(&growths, request.validate_only).await;
        let mut results: Vec<CreatePartitionsTopicResult> = growths
            .iter()
            .zip(outcomes)
            .map(|(g, outcome)| {
                let name = TopicName(StrBytes::from_string(g.topic.clone()));
                answer(name, outcome.err().map(|e| (controller_error(&e), e.to_string())))
            })
            .collect();
        results.extend(refused);
        Some(CreatePartitionsResponse::default().with_results(results))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::create_partitions_request::CreatePartitionsAssignment;
    use kafka_protocol::messages::BrokerId;

    fn topic(name: &'static str, count: i32) -> CreatePartitionsTopic {
        CreatePartitionsTopic::default().with_name(TopicName(StrBytes::from_static_str(name))).with_count(count)
    }

    #[test]
    fn every_topic_is_answered_once_and_duplicates_are_refused() {
        let assigned = topic("b", 3)
            .with_assignments(Some(vec![CreatePartitionsAssignment::default().with_broker_ids(vec![BrokerId(1)])]));
        let (growths, refused) = split(&[topic("a", 2), assigned, topic("a", 4)]);
        assert_eq!(growths.len(), 1);
        assert_eq!((growths[0].topic.as_str(), growths[0].count), ("b", 3));
        assert_eq!(growths[0].assignments, Some(vec![vec![1]]));
        assert_eq!(refused.len(), 1);
        assert_eq!((refused[0].name.0.as_str(), refused[0].error_code), ("a", ResponseError::InvalidRequest.code()));
    }
}
