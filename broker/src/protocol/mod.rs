//! The Kafka wire codec: pure functions over bytes, no I/O.
//!
//! [`frame`] splits a byte stream into size-prefixed frames (checking the size before anything is
//! allocated); [`codec`] reads a request header and body and writes a response, turning every
//! decoder failure (including a panic inside kafka-protocol) into an error for that one
//! connection. The API registry lives in `handlers`, next to the handlers it dispatches to.

pub mod codec;
pub mod frame;

/// Why a request could not be understood. Each one closes its connection.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("frame size {size} outside 1..={max}")]
    FrameSize { size: i64, max: usize },
    #[error("frame of {0} bytes is shorter than a request header")]
    ShortFrame(usize),
    #[error("unknown api key {0}")]
    UnknownApiKey(i16),
    #[error("unsupported version {version} of api key {api_key}")]
    UnsupportedVersion { api_key: i16, version: i16 },
    #[error("malformed {what}: {reason}")]
    Malformed { what: &'static str, reason: String },
    #[error("cannot encode response: {0}")]
    Encode(String),
}
