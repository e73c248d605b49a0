//! DeleteTopics (key 20), versions 1-6: deletes topics named by name (v1-5 `topic_names`, v6
//! `topics`) or by topic id (v6). Answers per topic with its name, its id (v6) and an error
//! message (v5+): UNKNOWN_TOPIC_OR_PARTITION for an unknown name, UNKNOWN_TOPIC_ID for an
//! unknown id. As in Kafka, an entry naming both a name and an id, or neither, and a name or id
//! given twice, are INVALID_REQUEST and nothing is deleted for them.

use std::collections::BTreeSet;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{ApiKey, DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use sluice_controller::image::MetadataImage;
use uuid::Uuid;

use super::errors::controller_error;
use super::{Handler, RequestContext};
use crate::broker::Broker;

pub struct DeleteTopicsHandler;

/// First version that names topics in `topics` (by name or id) instead of `topic_names`.
const TOPIC_ID_VERSION: i16 = 6;

fn result(name: Option<&str>, topic_id: Uuid, error: Option<(ResponseError, String)>) -> DeletableTopicResult {
    let (code, message) = error.map_or((0, None), |(e, m)| (e.code(), Some(StrBytes::from_string(m))));
    DeletableTopicResult::default()
        .with_name(name.map(|n| TopicName(StrBytes::from_string(n.to_string()))))
        .with_topic_id(topic_id)
        .with_error_code(code)
        .with_error_message(message)
}

fn invalid(name: Option<&str>, topic_id: Uuid, message: &str) -> DeletableTopicResult {
    result(name, topic_id, Some((ResponseError::InvalidRequest, message.to_string())))
}

/// What one request asks for once malformed and duplicate entries are answered.
#[derive(Debug, Default)]
struct Targets {
    /// Answers already known (malformed, duplicate or unknown entries).
    answered: Vec<DeletableTopicResult>,
    /// Topics to delete: name, and the id the request named it by (nil when named by name).
    delete: Vec<(String, Uuid)>,
}

/// Sorts the request's entries into topics to delete and entries answered at once, as Kafka's
/// controller does: duplicates of a name or id are refused once each and not deleted.
fn targets(
    image: &MetadataImage,
    names: Vec<String>,
    ids: Vec<Uuid>,
    mut answered: Vec<DeletableTopicResult>,
) -> Targets {
    let mut seen_names = BTreeSet::new();
    let duplicate_names: BTreeSet<String> = names.iter().filter(|n| !seen_names.insert(n.as_str())).cloned().collect();
    let mut seen_ids = BTreeSet::new();
    let duplicate_ids: BTreeSet<Uuid> = ids.iter().filter(|id| !seen_ids.insert(**id)).copied().collect();
    let mut delete = Vec::new();
    let mut by_id = BTreeSet::new();
    for id in seen_ids.iter().filter(|id| !duplicate_ids.contains(id)) {
        match image.topics.get(id) {
            Some(topic) => {
                by_id.insert(*id);
                delete.push((topic.name.clone(), *id));
            }
            None => answered.push(result(
                None,
                *id,
                Some((ResponseError::UnknownTopicId, format!("Unknown topic id {id}."))),
            )),
        }
    }
    for name in seen_names.iter().filter(|n| !duplicate_names.contains(**n)) {
        match image.topic_by_name(name) {
            Some(topic) if by_id.contains(&topic.topic_id) => {
                delete.retain(|(_, id)| *id != topic.topic_id);
                answered.push(invalid(
                    Some(name),
                    topic.topic_id,
                    "The provided topic name maps to an ID that was already supplied.",
                ));
            }
            Some(_) => delete.push((name.to_string(), Uuid::nil())),
            None => {
                let message = "This server does not host this topic-partition.".to_string();
                answered.push(result(Some(name), Uuid::nil(), Some((ResponseError::UnknownTopicOrPartition, message))));
            }
        }
    }
    answered.extend(duplicate_names.iter().map(|n| invalid(Some(n), Uuid::nil(), "Duplicate topic name.")));
    answered.extend(duplicate_ids.iter().map(|id| invalid(None, *id, "Duplicate topic id.")));
    Targets { answered, delete }
}

/// Splits a v6 `topics` list into names and ids, answering entries with both or neither.
fn split_v6(request: DeleteTopicsRequest) -> (Vec<String>, Vec<Uuid>, Vec<DeletableTopicResult>) {
    let (mut names, mut ids, mut answered) = (Vec::new(), Vec::new(), Vec::new());
    for topic in request.topics {
        match (topic.name, topic.topic_id.is_nil()) {
            (None, true) => answered.push(invalid(None, Uuid::nil(), "Neither topic name nor id were specified.")),
            (None, false) => ids.push(topic.topic_id),
            (Some(name), true) => names.push(name.0.as_str().to_string()),
            (Some(name), false) => {
                answered.push(invalid(
                    Some(name.0.as_str()),
                    topic.topic_id,
                    "You may not specify both topic name and topic id.",
                ));
            }
        }
    }
    (names, ids, answered)
}

impl Handler for DeleteTopicsHandler {
    type Request = DeleteTopicsRequest;
    type Response = DeleteTopicsResponse;
    const KEY: ApiKey = ApiKey::DeleteTopics;
    const VERSIONS: (i16, i16) = (1, 6);

    async fn handle(
        broker: Arc<Broker>,
        ctx: RequestContext,
        request: DeleteTopicsRequest,
    ) -> Option<DeleteTopicsResponse> {
        let (names, ids, answered) = if ctx.api_version >= TOPIC_ID_VERSION {
            split_v6(request)
        } else {
            (request.topic_names.iter().map(|n| n.0.as_str().to_string()).collect(), Vec::new(), Vec::new())
        };
        let image = broker.metadata.image();
        let Targets { mut answered, delete } = targets(&image, names, ids, answered);
        let to_delete: Vec<String> = delete.iter().map(|(name, _)| name.clone()).collect();
        let outcomes = broker.controller.delete_topics(&to_delete).await;
        for ((name, named_id), outcome) in delete.iter().zip(outcomes) {
            answered.push(match outcome {
                Ok(topic_id) => result(Some(name), topic_id, None),
                Err(e) => result(Some(name), *named_id, Some((controller_error(&e), e.to_string()))),
            });
        }
        Some(DeleteTopicsResponse::default().with_responses(answered))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_controller::records::MetadataRecord;

    fn image() -> MetadataImage {
        let mut image = MetadataImage::default();
        image.apply(&MetadataRecord::Topic { name: "a".into(), topic_id: Uuid::from_u128(1) });
        image.apply(&MetadataRecord::Topic { name: "b".into(), topic_id: Uuid::from_u128(2) });
        image
    }

    fn codes(t: &Targets) -> Vec<(Option<String>, Uuid, i16)> {
        t.answered
            .iter()
            .map(|r| (r.name.as_ref().map(|n| n.0.as_str().to_string()), r.topic_id, r.error_code))
            .collect()
    }

    #[test]
    fn unknown_names_and_ids_get_their_own_codes() {
        let t =
            targets(&image(), vec!["a".into(), "zz".into()], vec![Uuid::from_u128(2), Uuid::from_u128(9)], Vec::new());
        assert_eq!(t.delete, vec![("b".to_string(), Uuid::from_u128(2)), ("a".to_string(), Uuid::nil())]);
        assert_eq!(
            codes(&t),
            vec![
                (None, Uuid::from_u128(9), ResponseError::UnknownTopicId.code()),
                (Some("zz".into()), Uuid::nil(), ResponseError::UnknownTopicOrPartition.code()),
            ]
        );
    }

    #[test]
    fn duplicates_are_refused_and_not_deleted() {
        let id = Uuid::from_u128(1);
        let t = targets(&image(), vec!["b".into(), "b".into()], vec![id, id], Vec::new());
        assert!(t.delete.is_empty());
        let invalid = ResponseError::InvalidRequest.code();
        assert_eq!(codes(&t), vec![(Some("b".into()), Uuid::nil(), invalid), (None, id, invalid)]);
        let t = targets(&image(), vec!["a".into()], vec![id], Vec::new());
        assert!(t.delete.is_empty(), "a name and an id of the same topic delete nothing");
        assert_eq!(codes(&t), vec![(Some("a".into()), id, invalid)]);
    }
}
