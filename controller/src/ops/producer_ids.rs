//! Producer id blocks: ranges of producer ids handed to a broker, persisted so that an id is never
//! handed out twice, even across restarts.

use super::OpResult;
use crate::error::ControllerError;
use crate::image::MetadataImage;
use crate::records::MetadataRecord;

/// How many producer ids one block holds (Kafka uses 1000).
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1000;

/// A range of producer ids `[first, first + size)` owned by one broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProducerIdBlock {
    pub first: i64,
    pub size: i64,
}

/// Allocates the next block for `broker_id`.
///
/// # Errors
/// INVALID_REQUEST once the id space is exhausted.
pub fn allocate_producer_ids(
    image: &MetadataImage,
    broker_id: i32,
) -> Result<OpResult<ProducerIdBlock>, ControllerError> {
    let first = image.next_producer_id;
    let next = first
        .checked_add(PRODUCER_ID_BLOCK_SIZE)
        .ok_or_else(|| ControllerError::InvalidRequest("producer id space exhausted".into()))?;
    Ok(OpResult {
        records: vec![MetadataRecord::ProducerIds { broker_id, next_producer_id: next }],
        response: ProducerIdBlock { first, size: PRODUCER_ID_BLOCK_SIZE },
    })
}
