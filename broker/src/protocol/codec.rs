//! Request header and body decoding, response encoding.

use std::panic::{catch_unwind, AssertUnwindSafe};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};

use super::ProtocolError;

/// A request whose header has been read; the body is still bytes.
#[derive(Debug, Clone)]
pub struct RawRequest {
    pub api_key: ApiKey,
    pub api_version: i16,
    pub correlation_id: i32,
    pub client_id: Option<String>,
    pub body: Bytes,
}

/// The fixed first eight bytes of every request header.
///
/// # Errors
/// `ShortFrame` when the frame cannot hold them.
pub fn peek_fixed_header(frame: &[u8]) -> Result<(i16, i16, i32), ProtocolError> {
    let Some(h) = frame.get(..8) else { return Err(ProtocolError::ShortFrame(frame.len())) };
    Ok((
        i16::from_be_bytes([h[0], h[1]]),
        i16::from_be_bytes([h[2], h[3]]),
        i32::from_be_bytes([h[4], h[5], h[6], h[7]]),
    ))
}

/// Runs a decoder, turning both its errors and its panics into `Malformed`.
fn guarded<T>(what: &'static str, f: impl FnOnce() -> anyhow_like::Result<T>) -> Result<T, ProtocolError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(ProtocolError::Malformed { what, reason: e.to_string() }),
        Err(_) => Err(ProtocolError::Malformed { what, reason: "decoder panicked".into() }),
    }
}

mod anyhow_like {
    pub type Result<T> = std::result::Result<T, anyhow::Error>;
}

/// Reads the request header of `frame` (whose version depends on the api key and version).
///
/// # Errors
/// `ShortFrame`, `UnknownApiKey`, or `Malformed` when the header does not decode.
pub fn decode_request(frame: Bytes, is_supported: impl Fn(ApiKey, i16) -> bool) -> Result<RawRequest, ProtocolError> {
    let (key, api_version, correlation_id) = peek_fixed_header(&frame)?;
    let api_key = ApiKey::try_from(key).map_err(|()| ProtocolError::UnknownApiKey(key))?;
    if !is_supported(api_key, api_version) {
        // Only the fixed part is trustworthy when the version is one we do not know.
        return Ok(RawRequest { api_key, api_version, correlation_id, client_id: None, body: Bytes::new() });
    }
    let header_version = api_key.request_header_version(api_version);
    let mut buf = frame;
    let header = guarded("request header", || RequestHeader::decode(&mut buf, header_version))?;
    Ok(RawRequest {
        api_key,
        api_version,
        correlation_id,
        client_id: header.client_id.map(|c| c.as_str().to_string()),
        body: buf,
    })
}

/// Decodes a request body of type `R` at `version`.
///
/// # Errors
/// `Malformed` when the body does not decode (never a panic).
pub fn decode_body<R: Decodable>(body: Bytes, version: i16) -> Result<R, ProtocolError> {
    let mut buf = body;
    guarded("request body", || R::decode(&mut buf, version))
}

/// Encodes a whole response frame: size prefix, response header, body.
///
/// # Errors
/// `Encode` when the body cannot be written at this version (a handler bug).
pub fn encode_response<R: Encodable>(
    correlation_id: i32,
    header_version: i16,
    body: &R,
    version: i16,
) -> Result<Bytes, ProtocolError> {
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let encode_err = |e: anyhow::Error| ProtocolError::Encode(e.to_string());
    let size =
        header.compute_size(header_version).map_err(encode_err)? + body.compute_size(version).map_err(encode_err)?;
    let size_i32 = i32::try_from(size).map_err(|_| ProtocolError::Encode(format!("response of {size} bytes")))?;
    let mut out = BytesMut::with_capacity(4 + size);
    out.put_i32(size_i32);
    header.encode(&mut out, header_version).map_err(encode_err)?;
    body.encode(&mut out, version).map_err(encode_err)?;
    Ok(out.freeze())
}
