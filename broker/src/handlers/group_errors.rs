//! The one place where consumer-group coordinator errors become Kafka error codes.
//!
//! Every group handler (JoinGroup, SyncGroup, Heartbeat, LeaveGroup, FindCoordinator and the
//! offset/list/describe/delete APIs) maps a [`GroupError`] here and nowhere else.

use kafka_protocol::error::ResponseError;

use crate::coordinator::group::GroupError;

/// The Kafka error for a refused group operation. Each [`GroupError`] variant is named after the
/// Kafka code it becomes, except [`GroupError::GroupsMaxReached`] (Sluice's own bound on groups
/// per coordinator), which clients see as the retriable COORDINATOR_NOT_AVAILABLE.
pub fn group_error(e: &GroupError) -> ResponseError {
    match e {
        GroupError::CoordinatorNotAvailable => ResponseError::CoordinatorNotAvailable,
        GroupError::NotCoordinator => ResponseError::NotCoordinator,
        GroupError::UnknownServerError => ResponseError::UnknownServerError,
        GroupError::InvalidGroupId => ResponseError::InvalidGroupId,
        GroupError::UnknownMemberId => ResponseError::UnknownMemberId,
        GroupError::IllegalGeneration => ResponseError::IllegalGeneration,
        GroupError::RebalanceInProgress => ResponseError::RebalanceInProgress,
        GroupError::FencedInstanceId => ResponseError::FencedInstanceId,
        GroupError::InconsistentGroupProtocol => ResponseError::InconsistentGroupProtocol,
        GroupError::GroupMaxSizeReached => ResponseError::GroupMaxSizeReached,
        GroupError::InvalidSessionTimeout => ResponseError::InvalidSessionTimeout,
        GroupError::MemberIdRequired(_) => ResponseError::MemberIdRequired,
        GroupError::GroupIdNotFound => ResponseError::GroupIdNotFound,
        GroupError::NonEmptyGroup => ResponseError::NonEmptyGroup,
        GroupError::GroupSubscribedToTopic => ResponseError::GroupSubscribedToTopic,
        GroupError::OffsetMetadataTooLarge => ResponseError::OffsetMetadataTooLarge,
        GroupError::GroupsMaxReached => ResponseError::CoordinatorNotAvailable,
        GroupError::FencedMemberEpoch => ResponseError::FencedMemberEpoch,
        GroupError::StaleMemberEpoch => ResponseError::StaleMemberEpoch,
        GroupError::UnreleasedInstanceId => ResponseError::UnreleasedInstanceId,
        GroupError::UnsupportedAssignor => ResponseError::UnsupportedAssignor,
        GroupError::InvalidRequest(_) => ResponseError::InvalidRequest,
    }
}

/// [`group_error`] as the wire's `i16` error code.
pub fn group_error_code(e: &GroupError) -> i16 {
    group_error(e).code()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_variant_becomes_the_code_of_its_name() {
        let cases = [
            (GroupError::CoordinatorNotAvailable, 15),
            (GroupError::NotCoordinator, 16),
            (GroupError::UnknownServerError, -1),
            (GroupError::InvalidGroupId, 24),
            (GroupError::UnknownMemberId, 25),
            (GroupError::IllegalGeneration, 22),
            (GroupError::RebalanceInProgress, 27),
            (GroupError::FencedInstanceId, 82),
            (GroupError::InconsistentGroupProtocol, 23),
            (GroupError::GroupMaxSizeReached, 81),
            (GroupError::InvalidSessionTimeout, 26),
            (GroupError::MemberIdRequired("m-1".into()), 79),
            (GroupError::GroupIdNotFound, 69),
            (GroupError::NonEmptyGroup, 68),
            (GroupError::GroupSubscribedToTopic, 86),
            (GroupError::OffsetMetadataTooLarge, 12),
            (GroupError::GroupsMaxReached, 15),
            (GroupError::FencedMemberEpoch, 110),
            (GroupError::StaleMemberEpoch, 113),
            (GroupError::UnreleasedInstanceId, 111),
            (GroupError::UnsupportedAssignor, 112),
            (GroupError::InvalidRequest("x"), 42),
        ];
        for (e, code) in cases {
            assert_eq!(group_error_code(&e), code, "{e:?}");
        }
    }
}
