//! Cluster membership: broker registration.

use uuid::Uuid;

use super::OpResult;
use crate::image::MetadataImage;
use crate::records::MetadataRecord;

/// A broker's registration request.
#[derive(Debug, Clone)]
pub struct BrokerRegistration {
    pub node_id: i32,
    pub incarnation_id: Uuid,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

/// Registers (or re-registers with new endpoints) a broker. Writes nothing when the image already
/// says exactly this.
pub fn register_broker(image: &MetadataImage, reg: &BrokerRegistration) -> OpResult<()> {
    let same =
        image.brokers.get(&reg.node_id).is_some_and(|b| b.host == reg.host && b.port == reg.port && b.rack == reg.rack);
    let records = if same {
        Vec::new()
    } else {
        vec![MetadataRecord::RegisterBroker {
            node_id: reg.node_id,
            incarnation_id: reg.incarnation_id,
            host: reg.host.clone(),
            port: reg.port,
            rack: reg.rack.clone(),
        }]
    };
    OpResult { records, response: () }
}
