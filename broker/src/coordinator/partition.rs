//! Which partition of `__consumer_offsets` coordinates a group: Kafka's own formula, bit for bit,
//! so that clients, tools and a mixed fleet agree on the coordinator of every group.

/// Java's `String.hashCode()`: `h = 31 * h + c` over the UTF-16 code units, wrapping on overflow.
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |h, unit| h.wrapping_mul(31).wrapping_add(i32::from(unit)))
}

/// Kafka's `Utils.abs`: the absolute value, except that `i32::MIN` (which has none) maps to 0.
pub fn kafka_abs(n: i32) -> i32 {
    if n == i32::MIN {
        0
    } else {
        n.abs()
    }
}

/// The `__consumer_offsets` partition whose leader coordinates `group_id`:
/// `Utils.abs(groupId.hashCode()) % offsets.topic.num.partitions`, as Kafka computes it.
///
/// `partitions` is `offsets.topic.num.partitions` (default 50); a value below 1 is a
/// configuration error caught at start-up, and here yields partition 0.
pub fn partition_for(group_id: &str, partitions: i32) -> i32 {
    if partitions < 1 {
        return 0;
    }
    kafka_abs(java_string_hash(group_id)) % partitions
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_java_string_hash_code() {
        // Worked by hand: "ab" = 97 * 31 + 98; the emoji is the surrogate pair D83D DE00.
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("a"), 97);
        assert_eq!(java_string_hash("ab"), 3105);
        assert_eq!(java_string_hash("\u{1F600}"), 0xD83D * 31 + 0xDE00);
        // Overflowing values, computed independently with Java's formula.
        assert_eq!(java_string_hash("my-group"), -1_906_497_762);
        assert_eq!(java_string_hash("console-consumer-12345"), 158_455_506);
        assert_eq!(java_string_hash("groupé"), -1_237_460_406);
        // The classic string whose hashCode is Integer.MIN_VALUE.
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
    }

    #[test]
    fn partition_uses_kafka_abs_and_modulo() {
        assert_eq!(kafka_abs(i32::MIN), 0);
        assert_eq!(kafka_abs(-5), 5);
        assert_eq!(partition_for("a", 50), 47);
        assert_eq!(partition_for("ab", 50), 5);
        assert_eq!(partition_for("my-group", 50), 12);
        assert_eq!(partition_for("test-group-1", 50), 36);
        assert_eq!(partition_for("\u{1F600}", 50), 49);
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        assert_eq!(partition_for("my-group", 1), 0);
        assert_eq!(partition_for("my-group", 0), 0);
    }
}
