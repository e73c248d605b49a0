//! Requests whose items are partly refused by the handler itself and partly sent to the
//! controller in one batch: each item gets a slot, either its refusal or its index in the batch,
//! and the answers are put back in request order.

use kafka_protocol::error::ResponseError;
use kafka_protocol::protocol::StrBytes;
use sluice_controller::ControllerError;

use super::errors::controller_error;

/// An item's place: already answered (`Err`), or the index of its change in the controller batch.
pub type Slot<R> = Result<usize, R>;

/// Answers every slot in order: refusals as they are, batch items from `outcomes` (the
/// controller's results, one per entry of `names`) through `answer`.
pub fn merge<T, R>(
    slots: Vec<Slot<R>>,
    names: &[String],
    outcomes: &[Result<T, ControllerError>],
    answer: impl Fn(&StrBytes, Option<(ResponseError, String)>) -> R,
) -> Vec<R> {
    slots
        .into_iter()
        .map(|slot| match slot {
            Err(known) => known,
            Ok(i) => {
                let name = StrBytes::from_string(names.get(i).cloned().unwrap_or_default());
                let error = match outcomes.get(i) {
                    Some(Ok(_)) => None,
                    Some(Err(e)) => Some((controller_error(e), e.to_string())),
                    None => Some((ResponseError::UnknownServerError, "the controller gave no answer".to_string())),
                };
                answer(&name, error)
            }
        })
        .collect()
}
