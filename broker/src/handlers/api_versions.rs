//! ApiVersions (key 18), versions 0-4: the versions Sluice serves, straight from the registry.
//!
//! A request at a version newer than ours is answered by the connection layer (see
//! [`unsupported_version_response`]) at v0 with UNSUPPORTED_VERSION and our ranges, so the client
//! can retry with a version we know.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::{ApiVersion, FinalizedFeatureKey, SupportedFeatureKey};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::protocol::StrBytes;

use super::{Handler, RequestContext, REGISTRY};
use crate::broker::Broker;
use crate::protocol::codec::encode_response;
use crate::protocol::ProtocolError;

pub struct ApiVersionsHandler;

/// The `metadata.version` feature level Sluice reports (Kafka 4.0's 3.9-IV0 baseline is 21).
const METADATA_VERSION_LEVEL: i16 = 21;

fn api_keys() -> Vec<ApiVersion> {
    REGISTRY
        .iter()
        .map(|e| {
            ApiVersion::default()
                .with_api_key(e.key as i16)
                .with_min_version(e.min_version)
                .with_max_version(e.max_version)
        })
        .collect()
}

fn response(error: Option<ResponseError>, version: i16) -> ApiVersionsResponse {
    let response =
        ApiVersionsResponse::default().with_error_code(error.map_or(0, |e| e.code())).with_api_keys(api_keys());
    // Feature fields exist from v3 on; the codec refuses to write them at older versions.
    if version < 3 {
        return response;
    }
    response
        .with_supported_features(vec![SupportedFeatureKey::default()
            .with_name(StrBytes::from_static_str("metadata.version"))
            .with_min_version(1)
            .with_max_version(METADATA_VERSION_LEVEL)])
        .with_finalized_features_epoch(0)
        .with_finalized_features(vec![FinalizedFeatureKey::default()
            .with_name(StrBytes::from_static_str("metadata.version"))
            .with_min_version_level(METADATA_VERSION_LEVEL)
            .with_max_version_level(METADATA_VERSION_LEVEL)])
}

impl Handler for ApiVersionsHandler {
    type Request = ApiVersionsRequest;
    type Response = ApiVersionsResponse;
    const KEY: ApiKey = ApiKey::ApiVersions;
    const VERSIONS: (i16, i16) = (0, 4);

    async fn handle(
        _broker: Arc<Broker>,
        ctx: RequestContext,
        _request: ApiVersionsRequest,
    ) -> Option<ApiVersionsResponse> {
        Some(response(None, ctx.api_version))
    }
}

/// The v0 answer to an ApiVersions request at a version we do not serve.
///
/// # Errors
/// Only if encoding fails (a bug).
pub fn unsupported_version_response(correlation_id: i32) -> Result<Bytes, ProtocolError> {
    // The ApiVersions response header is always v0, whatever the request version.
    encode_response(correlation_id, 0, &response(Some(ResponseError::UnsupportedVersion), 0), 0)
}
