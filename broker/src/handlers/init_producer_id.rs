//! InitProducerId (key 22), versions 0-5, for idempotent producers: as in Kafka, a request
//! without a transactional id always gets a fresh producer id (epoch 0) from the controller's
//! persisted blocks, including the KIP-360 retry that names the producer's current id and epoch;
//! naming only one of the two is INVALID_REQUEST.
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

/// Checks the producer id and epoch a request names (both or neither, never negative).
///
/// # Errors
/// INVALID_REQUEST when only one is given, or either is negative.
fn check_current(producer_id: i64, producer_epoch: i16) -> Result<(), ResponseError> {
    match (producer_id == NO_PRODUCER_ID, producer_epoch == NO_PRODUCER_EPOCH) {
        (true, true) => Ok(()),
        (false, false) if producer_id >= 0 && producer_epoch >= 0 => Ok(()),
        _ => Err(ResponseError::InvalidRequest),
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

    async fn handle(
        broker: Arc<Broker>,
        _ctx: RequestContext,
        request: InitProducerIdRequest,
    ) -> Option<InitProducerIdResponse> {
        match &request.transactional_id {
            Some(id) if id.0.as_str().is_empty() => return Some(error_response(ResponseError::InvalidRequest)),
            Some(_) => return Some(error_response(ResponseError::UnsupportedVersion)),
            None => {}
        }
        if let Err(error) = check_current(request.producer_id.0, request.producer_epoch) {
            return Some(error_response(error));
        }
        let (producer_id, producer_epoch) = match broker.producer_ids.next(&broker.controller, broker.node_id()).await {
            Ok(id) => (id, 0),
            Err(e) => {
                tracing::warn!(error = %e, "could not allocate a producer id");
                return Some(error_response(controller_error(&e)));
            }
        };
        Some(
            InitProducerIdResponse::default()
                .with_producer_id(ProducerId(producer_id))
                .with_producer_epoch(producer_epoch),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_or_neither_of_id_and_epoch() {
        assert_eq!(check_current(-1, -1), Ok(()));
        assert_eq!(check_current(5, 3), Ok(()));
        assert_eq!(check_current(5, -1), Err(ResponseError::InvalidRequest));
        assert_eq!(check_current(-1, 3), Err(ResponseError::InvalidRequest));
        assert_eq!(check_current(-7, 3), Err(ResponseError::InvalidRequest));
        assert_eq!(check_current(5, -2), Err(ResponseError::InvalidRequest));
    }
}
