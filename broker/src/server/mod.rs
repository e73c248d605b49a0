//! The network edge: the listener (bounded connections) and one task pair per connection
//! (framing with the size checked before allocating, pipelined requests answered in order).

pub mod connection;
pub mod listener;
