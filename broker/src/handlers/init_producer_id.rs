//! InitProducerId (key 22), versions 0-5, for idempotent producers: a fresh producer id from the
//! controller's persisted blocks with epoch 0, or, when the producer names its current id and
//! epoch (v3+, KIP-360), the same id with the epoch bumped. An epoch that would reach
//! `i16::MAX` gets a fresh id instead, and so does an id this cluster never handed out (bumping
//! it could collide with the producer it is later given to).
//!
//! Transactions are not served yet: a request with a transactional id is UNSUPPORTED_VERSION, a
//! non-retriable error clients report at once, where Kafka's coordinator errors
//! (COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR) would make them look for a coordinator forever.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{ApiKey, InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::errors::controller_error;
use super::{Handler, RequestContext};
use crate::broker::Broker;

pub struct InitProducerIdHandler;

const NO_PRODUCER_ID: i64 = -1;
const NO_PRODUCER_EPOCH: i16 = -1;
/// The highest epoch a bump may produce; past it the producer gets a fresh id (as in Kafka).
const PRODUCER_EPOCH_MAX: i16 = i16::MAX - 1;

/// What to answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// A fresh producer id, epoch 0.
    Fresh,
    /// The given producer id with this epoch.
    Bump { producer_id: i64, producer_epoch: i16 },
}

/// Decides between a fresh id and an epoch bump. `next_producer_id` is the first id the cluster
/// has not handed out yet.
///
/// # Errors
/// INVALID_REQUEST when only one of producer id and epoch is given, or either is negative.
fn plan(producer_id: i64, producer_epoch: i16, next_producer_id: i64) -> Result<Plan, ResponseError> {
    match (producer_id == NO_PRODUCER_ID, producer_epoch == NO_PRODUCER_EPOCH) {
        (true, true) => Ok(Plan::Fresh),
        (true, false) | (false, true) => Err(ResponseError::InvalidRequest),
        (false, false) if producer_id < 0 || producer_epoch < 0 => Err(ResponseError::InvalidRequest),
        (false, false) if producer_id >= next_producer_id || producer_epoch >= PRODUCER_EPOCH_MAX => Ok(Plan::Fresh),
        (false, false) => Ok(Plan::Bump { producer_id, producer_epoch: producer_epoch + 1 }),
    }
}

fn error_response(error: ResponseError) -> InitProducerIdResponse {
    InitProducerIdResponse::default()
        .with_error_code(error.code())
        .with_producer_id(ProducerId(NO_PRODUCER_ID))
        .with_producer_epoch(NO_PRODUCER_EPOCH)
}

impl Handler for InitProducerIdHandler {
    type Request = InitProducerIdRequest;
    type Response = InitProducerIdResponse;
    const KEY: ApiKey = ApiKey::InitProducerId;
    const VERSIONS: (i16, i16) = (0, 5);

    async fn handle(broker: Arc<Broker>, _ctx: RequestContext, request: InitProducerIdRequest) -> Option<InitProducerIdResponse> {
        match &request.transactional_id {
            Some(id) if id.0.as_str().is_empty() => return Some(error_response(ResponseError::InvalidRequest)),
            Some(_) => return Some(error_response(ResponseError::UnsupportedVersion)),
            None => {}
        }
        let next_producer_id = broker.metadata.image().next_producer_id;
        let (producer_id, producer_epoch) = match plan(request.producer_id.0, request.producer_epoch, next_producer_id) {
            Ok(Plan::Bump { producer_id, producer_epoch }) => (producer_id, producer_epoch),
            Ok(Plan::Fresh) => match broker.producer_ids.next(&broker.controller, broker.node_id()).await {
                Ok(id) => (id, 0),
                Err(e) => {
                    tracing::warn!(error = %e, "could not allocate a producer id");
                    return Some(error_response(controller_error(&e)));
                }
            },
            Err(error) => return Some(error_response(error)),
        };
        Some(InitProducerIdResponse::default().with_producer_id(ProducerId(producer_id)).with_producer_epoch(producer_epoch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_id_means_a_fresh_one() {
        assert_eq!(plan(-1, -1, 0), Ok(Plan::Fresh));
    }

    #[test]
    fn a_known_id_gets_its_epoch_bumped() {
        assert_eq!(plan(5, 0, 1000), Ok(Plan::Bump { producer_id: 5, producer_epoch: 1 }));
        assert_eq!(plan(5, 41, 1000), Ok(Plan::Bump { producer_id: 5, producer_epoch: 42 }));
        assert_eq!(plan(5, PRODUCER_EPOCH_MAX - 1, 1000), Ok(Plan::Bump { producer_id: 5, producer_epoch: PRODUCER_EPOCH_MAX }));
    }

    #[test]
    fn exhausted_epochs_and_unissued_ids_get_a_fresh_id() {
        assert_eq!(plan(5, PRODUCER_EPOCH_MAX, 1000), Ok(Plan::Fresh));
        assert_eq!(plan(5, i16::MAX, 1000), Ok(Plan::Fresh));
        assert_eq!(plan(1000, 3, 1000), Ok(Plan::Fresh), "an id never handed out is not bumped");
    }

    #[test]
    fn half_given_or_negative_ids_are_invalid() {
        assert_eq!(plan(5, -1, 1000), Err(ResponseError::InvalidRequest));
        assert_eq!(plan(-1, 3, 1000), Err(ResponseError::InvalidRequest));
        assert_eq!(plan(-7, 3, 1000), Err(ResponseError::InvalidRequest));
        assert_eq!(plan(5, -2, 1000), Err(ResponseError::InvalidRequest));
    }
}
