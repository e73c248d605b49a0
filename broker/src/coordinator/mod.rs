//! Coordinators: the state machines behind Kafka's group (and later transaction and share) APIs.
//!
//! This module owns the consumer-group coordinator's logic: Kafka's classic group protocol
//! (join, sync, heartbeat, leave, with generations, static members and the initial rebalance
//! delay), committed offsets and their retention, and the record format those are persisted in on
//! the internal topic `__consumer_offsets`. It is a pure core: it opens no sockets, sees no
//! protocol (kafka-protocol) or storage types, reads no clock (every call takes `now_ms`) and
//! draws no random numbers (member ids come from a caller-provided seed). Waiting is the caller's
//! job: a request that cannot be answered yet is *parked* under a ticket and answered later
//! through an effect. Persistence is the caller's job too: records to write come back as effects,
//! and the caller reports when they are durable.
//!
//! It must never block, never do I/O, and never let an answer out before the records it depends
//! on are durable.

pub mod assignors;
pub mod group;
pub mod partition;
