//! Shared pieces of Sluice's fuzz targets: how a fuzz input becomes a request frame, and the
//! match from each registered API key to the kafka-protocol request type its handler decodes.
//!
//! The targets drive exactly the functions the server's connection task calls on a frame
//! (`frame::take_frame`, `codec::decode_request`, `codec::decode_body::<T>`); they never open a
//! socket or a data directory.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{self as m, ApiKey};
use sluice::handlers::{is_supported, REGISTRY};
use sluice::protocol::{codec, frame, ProtocolError};

/// Maps every api key kafka-protocol 0.18 knows to its request type and decodes with
/// `codec::decode_body`, exactly as `handlers::call::<H>` does for a registered handler (whose
/// `H::Request` is that same type). Covering every key, not only today's registry, keeps the
/// target right as handlers are added.
macro_rules! decode_by_key {
    ($key:expr, $body:expr, $version:expr, { $($api:ident => $request:ident,)* }) => {
        match $key {
            $(ApiKey::$api => Some(codec::decode_body::<m::$request>($body, $version).map(drop)),)*
            #[allow(unreachable_patterns)]
            _ => None,
        }
    };
}

/// Decodes `body` as the request type for `key`, or `None` when kafka-protocol has no request
/// type for `key` (which [`assert_registry_covered`] turns into a loud failure).
pub fn decode_for(key: ApiKey, body: Bytes, version: i16) -> Option<Result<(), ProtocolError>> {
    decode_by_key!(key, body, version, {
        AddOffsetsToTxn => AddOffsetsToTxnRequest,
        AddPartitionsToTxn => AddPartitionsToTxnRequest,
        AddRaftVoter => AddRaftVoterRequest,
        AllocateProducerIds => AllocateProducerIdsRequest,
        AlterClientQuotas => AlterClientQuotasRequest,
        AlterConfigs => AlterConfigsRequest,
        AlterPartition => AlterPartitionRequest,
        AlterPartitionReassignments => AlterPartitionReassignmentsRequest,
        AlterReplicaLogDirs => AlterReplicaLogDirsRequest,
        AlterShareGroupOffsets => AlterShareGroupOffsetsRequest,
        AlterUserScramCredentials => AlterUserScramCredentialsRequest,
        ApiVersions => ApiVersionsRequest,
        AssignReplicasToDirs => AssignReplicasToDirsRequest,
        BeginQuorumEpoch => BeginQuorumEpochRequest,
        BrokerHeartbeat => BrokerHeartbeatRequest,
        BrokerRegistration => BrokerRegistrationRequest,
        ConsumerGroupDescribe => ConsumerGroupDescribeRequest,
        ConsumerGroupHeartbeat => ConsumerGroupHeartbeatRequest,
        ControllerRegistration => ControllerRegistrationRequest,
        CreateAcls => CreateAclsRequest,
        CreateDelegationToken => CreateDelegationTokenRequest,
        CreatePartitions => CreatePartitionsRequest,
        CreateTopics => CreateTopicsRequest,
        DeleteAcls => DeleteAclsRequest,
        DeleteGroups => DeleteGroupsRequest,
        DeleteRecords => DeleteRecordsRequest,
        DeleteShareGroupOffsets => DeleteShareGroupOffsetsRequest,
        DeleteShareGroupState => DeleteShareGroupStateRequest,
        DeleteTopics => DeleteTopicsRequest,
        DescribeAcls => DescribeAclsRequest,
        DescribeClientQuotas => DescribeClientQuotasRequest,
        DescribeCluster => DescribeClusterRequest,
        DescribeConfigs => DescribeConfigsRequest,
        DescribeDelegationToken => DescribeDelegationTokenRequest,
        DescribeGroups => DescribeGroupsRequest,
        DescribeLogDirs => DescribeLogDirsRequest,
        DescribeProducers => DescribeProducersRequest,
        DescribeQuorum => DescribeQuorumRequest,
        DescribeShareGroupOffsets => DescribeShareGroupOffsetsRequest,
        DescribeTopicPartitions => DescribeTopicPartitionsRequest,
        DescribeTransactions => DescribeTransactionsRequest,
        DescribeUserScramCredentials => DescribeUserScramCredentialsRequest,
        ElectLeaders => ElectLeadersRequest,
        EndQuorumEpoch => EndQuorumEpochRequest,
        EndTxn => EndTxnRequest,
        Envelope => EnvelopeRequest,
        ExpireDelegationToken => ExpireDelegationTokenRequest,
        Fetch => FetchRequest,
        FetchSnapshot => FetchSnapshotRequest,
        FindCoordinator => FindCoordinatorRequest,
        GetTelemetrySubscriptions => GetTelemetrySubscriptionsRequest,
        Heartbeat => HeartbeatRequest,
        IncrementalAlterConfigs => IncrementalAlterConfigsRequest,
        InitProducerId => InitProducerIdRequest,
        InitializeShareGroupState => InitializeShareGroupStateRequest,
        JoinGroup => JoinGroupRequest,
        LeaveGroup => LeaveGroupRequest,
        ListConfigResources => ListConfigResourcesRequest,
        ListGroups => ListGroupsRequest,
        ListOffsets => ListOffsetsRequest,
        ListPartitionReassignments => ListPartitionReassignmentsRequest,
        ListTransactions => ListTransactionsRequest,
        Metadata => MetadataRequest,
        OffsetCommit => OffsetCommitRequest,
        OffsetDelete => OffsetDeleteRequest,
        OffsetFetch => OffsetFetchRequest,
        OffsetForLeaderEpoch => OffsetForLeaderEpochRequest,
        Produce => ProduceRequest,
        PushTelemetry => PushTelemetryRequest,
        ReadShareGroupState => ReadShareGroupStateRequest,
        ReadShareGroupStateSummary => ReadShareGroupStateSummaryRequest,
        RemoveRaftVoter => RemoveRaftVoterRequest,
        RenewDelegationToken => RenewDelegationTokenRequest,
        SaslAuthenticate => SaslAuthenticateRequest,
        SaslHandshake => SaslHandshakeRequest,
        ShareAcknowledge => ShareAcknowledgeRequest,
        ShareFetch => ShareFetchRequest,
        ShareGroupDescribe => ShareGroupDescribeRequest,
        ShareGroupHeartbeat => ShareGroupHeartbeatRequest,
        SyncGroup => SyncGroupRequest,
        TxnOffsetCommit => TxnOffsetCommitRequest,
        UnregisterBroker => UnregisterBrokerRequest,
        UpdateFeatures => UpdateFeaturesRequest,
        UpdateRaftVoter => UpdateRaftVoterRequest,
        Vote => VoteRequest,
        WriteShareGroupState => WriteShareGroupStateRequest,
        WriteTxnMarkers => WriteTxnMarkersRequest,
    })
}

/// Fails loudly when an API was added to the registry without being added to [`decode_for`].
pub fn assert_registry_covered() {
    for entry in REGISTRY {
        assert!(
            decode_for(entry.key, Bytes::new(), entry.min_version).is_some(),
            "fuzz target does not cover registered api {:?}; add it to decode_for",
            entry.key
        );
    }
}

/// Steers a raw input towards the APIs Sluice serves, so that most executions reach a body
/// decoder: a registered key at a supported version is kept as is (so captured client frames are
/// used verbatim); a negative key is kept too (the unknown-key path); any other key is mapped onto
/// a registry entry and its version folded into that entry's range.
pub fn steer(input: &[u8]) -> Vec<u8> {
    let mut frame = input.to_vec();
    if frame.len() < 4 {
        return frame;
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let raw_version = i16::from_be_bytes([frame[2], frame[3]]);
    if raw_key < 0 {
        return frame;
    }
    let entry = match ApiKey::try_from(raw_key).ok().and_then(sluice::handlers::lookup) {
        Some(entry) => entry,
        None => &REGISTRY[usize::from(raw_key as u16) % REGISTRY.len()],
    };
    let version = if is_supported(entry.key, raw_version) {
        raw_version
    } else {
        let span = i32::from(entry.max_version) - i32::from(entry.min_version) + 1;
        let folded = i32::from(entry.min_version) + i32::from(raw_version).rem_euclid(span);
        i16::try_from(folded).unwrap_or(entry.min_version)
    };
    frame[..2].copy_from_slice(&(entry.key as i16).to_be_bytes());
    frame[2..4].copy_from_slice(&version.to_be_bytes());
    frame
}

/// Runs one frame body (header + request body, no size prefix) through the server's path:
/// framing with a size prefix, header decoding, then the body decoder of its API.
pub fn run_frame(frame_body: &[u8], max_frame_bytes: usize) {
    let mut wire = BytesMut::with_capacity(4 + frame_body.len());
    let size = i32::try_from(frame_body.len()).unwrap_or(i32::MAX);
    wire.extend_from_slice(&size.to_be_bytes());
    wire.extend_from_slice(frame_body);
    let Ok(Some(frame)) = frame::take_frame(&mut wire, max_frame_bytes) else { return };
    let Ok(request) = codec::decode_request(frame, is_supported) else { return };
    if !is_supported(request.api_key, request.api_version) {
        return;
    }
    let decoded = decode_for(request.api_key, request.body, request.api_version);
    assert!(decoded.is_some(), "registered api {:?} has no decoder in the fuzz target", request.api_key);
}
