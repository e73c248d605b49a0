//! Authorized-operations bit fields (KIP-430) in Metadata, DescribeCluster, DescribeGroups,
//! ConsumerGroupDescribe and DescribeTopicPartitions: one bit per ACL operation code. Sluice has
//! no authorizer, so, like Kafka without one, every operation the resource type supports
//! (`AclEntry.supportedOperations`) is allowed. When the request does not ask for them the field
//! holds Kafka's "omitted" marker, `i32::MIN`.

/// The "not requested" marker.
pub const OMITTED: i32 = i32::MIN;

// ACL operation codes (org.apache.kafka.common.acl.AclOperation).
const READ: i32 = 3;
const WRITE: i32 = 4;
const CREATE: i32 = 5;
const DELETE: i32 = 6;
const ALTER: i32 = 7;
const DESCRIBE: i32 = 8;
const CLUSTER_ACTION: i32 = 9;
const DESCRIBE_CONFIGS: i32 = 10;
const ALTER_CONFIGS: i32 = 11;
const IDEMPOTENT_WRITE: i32 = 12;

const fn bits(ops: &[i32]) -> i32 {
    let mut field = 0;
    let mut i = 0;
    while i < ops.len() {
        field |= 1 << ops[i];
        i += 1;
    }
    field
}

/// A topic: READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS.
pub const TOPIC: i32 = bits(&[READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS]);
/// The cluster: CREATE, ALTER, DESCRIBE, CLUSTER_ACTION, DESCRIBE_CONFIGS, ALTER_CONFIGS,
/// IDEMPOTENT_WRITE.
pub const CLUSTER: i32 =
    bits(&[CREATE, ALTER, DESCRIBE, CLUSTER_ACTION, DESCRIBE_CONFIGS, ALTER_CONFIGS, IDEMPOTENT_WRITE]);
/// A group: READ, DELETE, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS.
pub const GROUP: i32 = bits(&[READ, DELETE, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS]);

/// `operations` when the request asked for them, the "omitted" marker otherwise.
pub fn answer(requested: bool, operations: i32) -> i32 {
    if requested {
        operations
    } else {
        OMITTED
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops(field: i32) -> Vec<i32> {
        (0..32).filter(|bit| field & (1 << bit) != 0).collect()
    }

    #[test]
    fn fields_hold_kafkas_supported_operations() {
        assert_eq!(ops(TOPIC), vec![3, 4, 5, 6, 7, 8, 10, 11]);
        assert_eq!(ops(CLUSTER), vec![5, 7, 8, 9, 10, 11, 12]);
        assert_eq!(ops(GROUP), vec![3, 6, 8, 10, 11]);
        assert_eq!(GROUP, 3400);
    }

    #[test]
    fn not_requested_is_the_omitted_marker() {
        assert_eq!(answer(false, TOPIC), i32::MIN);
        assert_eq!(answer(true, TOPIC), TOPIC);
    }
}
