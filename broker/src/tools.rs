//! Small operator commands built into the `sluice` binary.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use kafka_protocol::messages::{ApiKey, DescribeQuorumResponse, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

/// Largest response the tool reads back.
const RESPONSE_MAX_BYTES: usize = 16 * 1024 * 1024;

/// Asks the broker at `bootstrap` for the metadata quorum's status (DescribeQuorum v1, as
/// `kafka-metadata-quorum describe --status` does) and renders it as text.
///
/// # Errors
/// When the broker cannot be reached or answers something undecodable.
pub fn describe_quorum(bootstrap: &str) -> anyhow::Result<String> {
    let version = 1;
    let mut stream = TcpStream::connect(bootstrap)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::DescribeQuorum as i16)
        .with_request_api_version(version)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str("sluice-describe-quorum")));
    let mut body = BytesMut::new();
    header.encode(&mut body, ApiKey::DescribeQuorum.request_header_version(version))?;
    crate::handlers::describe_quorum::status_request().encode(&mut body, version)?;
    let len = u32::try_from(body.len())?;
    stream.write_all(&len.to_be_bytes())?;
    stream.write_all(&body)?;
    let mut len = [0u8; 4];
    stream.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    anyhow::ensure!(len <= RESPONSE_MAX_BYTES, "response of {len} bytes is too large");
    let mut buf = vec![0u8; len];
    stream.read_exact(&mut buf)?;
    let mut buf = bytes::Bytes::from(buf);
    ResponseHeader::decode(&mut buf, ApiKey::DescribeQuorum.response_header_version(version))?;
    let response = DescribeQuorumResponse::decode(&mut buf, version)?;
    anyhow::ensure!(!buf.has_remaining(), "trailing bytes in the response");
    let partition = response
        .topics
        .first()
        .and_then(|t| t.partitions.first())
        .ok_or_else(|| anyhow::anyhow!("the response describes no metadata partition"))?;
    anyhow::ensure!(partition.error_code == 0, "error code {}", partition.error_code);
    let leader = partition.leader_id.0;
    let leader_end = partition.current_voters.iter().find(|v| v.replica_id.0 == leader).map(|v| v.log_end_offset);
    let mut out = format!(
        "LeaderId:        {leader}\nLeaderEpoch:     {}\nHighWatermark:   {}\nCurrentVoters:   {:?}\n",
        partition.leader_epoch,
        partition.high_watermark,
        partition.current_voters.iter().map(|v| v.replica_id.0).collect::<Vec<_>>()
    );
    out.push_str("NodeId  Role      LogEndOffset  Lag\n");
    for v in &partition.current_voters {
        let role = if v.replica_id.0 == leader { "Leader" } else { "Follower" };
        let lag = match (leader_end, v.log_end_offset) {
            (Some(l), e) if e >= 0 && l >= 0 => (l - e).max(0).to_string(),
            _ => "?".into(),
        };
        out.push_str(&format!("{:<7} {:<9} {:<13} {lag}\n", v.replica_id.0, role, v.log_end_offset));
    }
    Ok(out)
}
