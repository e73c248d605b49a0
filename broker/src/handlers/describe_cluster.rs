//! DescribeCluster (key 60), versions 0-2: the cluster id, the controller, and the registered
//! brokers with their endpoints and racks. Version 1 adds the endpoint type: this listener serves
//! brokers (1); asking it for controllers (2) is MISMATCHED_ENDPOINT_TYPE and any other type
//! UNSUPPORTED_ENDPOINT_TYPE, as in Kafka. Version 2 adds fencing: Sluice never fences a
//! registered broker, so every broker is reported unfenced whether or not fenced ones are asked
//! for. Authorized operations: every cluster operation when asked for (no authorizer).

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{ApiKey, BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::protocol::StrBytes;
use sluice_controller::image::MetadataImage;

use super::{authorized_operations, Handler, RequestContext};
use crate::broker::Broker;

pub struct DescribeClusterHandler;

const ENDPOINT_TYPE_BROKERS: i8 = 1;
const ENDPOINT_TYPE_CONTROLLERS: i8 = 2;

/// Live brokers, and fenced ones too when the request asks for them (v2).
fn brokers(image: &MetadataImage, include_fenced: bool) -> Vec<DescribeClusterBroker> {
    image
        .brokers
        .values()
        .filter(|b| include_fenced || !b.fenced)
        .map(|b| {
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(b.node_id))
                .with_host(StrBytes::from_string(b.host.clone()))
                .with_port(b.port)
                .with_rack(b.rack.clone().map(StrBytes::from_string))
                .with_is_fenced(b.fenced)
        })
        .collect()
}

/// The error for a request whose endpoint type this listener does not serve.
fn endpoint_type_error(endpoint_type: i8) -> Option<(ResponseError, String)> {
    match endpoint_type {
        ENDPOINT_TYPE_BROKERS => None,
        ENDPOINT_TYPE_CONTROLLERS => Some((
            ResponseError::MismatchedEndpointType,
            "The request was sent to an endpoint of type BROKER, but we wanted an endpoint of type CONTROLLER"
                .to_string(),
        )),
        other => Some((ResponseError::UnsupportedEndpointType, format!("Unsupported endpoint type {other}"))),
    }
}

impl Handler for DescribeClusterHandler {
    type Request = DescribeClusterRequest;
    type Response = DescribeClusterResponse;
    const KEY: ApiKey = ApiKey::DescribeCluster;
    const VERSIONS: (i16, i16) = (0, 2);

    async fn handle(
        broker: Arc<Broker>,
        _ctx: RequestContext,
        request: DescribeClusterRequest,
    ) -> Option<DescribeClusterResponse> {
        // v0 has no endpoint type and decodes it as the default, brokers.
        if let Some((error, message)) = endpoint_type_error(request.endpoint_type) {
            return Some(
                DescribeClusterResponse::default()
                    .with_error_code(error.code())
                    .with_error_message(Some(StrBytes::from_string(message))),
            );
        }
        let image = broker.metadata.image();
        Some(
            DescribeClusterResponse::default()
                .with_endpoint_type(ENDPOINT_TYPE_BROKERS)
                .with_cluster_id(StrBytes::from_string(broker.cluster_id.clone()))
                .with_controller_id(BrokerId(super::metadata::controller_id(&broker, &image)))
                .with_brokers(brokers(&image, request.include_fenced_brokers))
                .with_cluster_authorized_operations(authorized_operations::answer(
                    request.include_cluster_authorized_operations,
                    authorized_operations::CLUSTER,
                )),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_broker_endpoint_type_is_served() {
        assert_eq!(endpoint_type_error(ENDPOINT_TYPE_BROKERS), None);
        assert!(matches!(
            endpoint_type_error(ENDPOINT_TYPE_CONTROLLERS),
            Some((ResponseError::MismatchedEndpointType, _))
        ));
        assert!(matches!(endpoint_type_error(0), Some((ResponseError::UnsupportedEndpointType, _))));
    }
}
