//! Size-prefixed framing: `size: i32 BE | size bytes`.
//!
//! "Incomplete" is not an error (wait for more bytes); "invalid" is, and it is decided from the
//! four size bytes alone, before a buffer for the frame exists. An HTTP request (`GET ` is
//! 1195725856) or a TLS hello on the plaintext port fails here.

use bytes::{Buf, Bytes, BytesMut};

use super::ProtocolError;

/// Checks a frame's declared size against the configured bound.
///
/// # Errors
/// `FrameSize` when `size <= 0` or `size > max`.
pub fn check_size(size_bytes: [u8; 4], max: usize) -> Result<usize, ProtocolError> {
    let size = i32::from_be_bytes(size_bytes);
    match usize::try_from(size) {
        Ok(n) if n > 0 && n <= max => Ok(n),
        _ => Err(ProtocolError::FrameSize { size: i64::from(size), max }),
    }
}

/// Takes one whole frame off the front of `buf`, if it is all there.
///
/// # Errors
/// `FrameSize` as for [`check_size`].
pub fn take_frame(buf: &mut BytesMut, max: usize) -> Result<Option<Bytes>, ProtocolError> {
    let Some(head) = buf.get(..4) else { return Ok(None) };
    let size = check_size([head[0], head[1], head[2], head[3]], max)?;
    if buf.len() < 4 + size {
        return Ok(None);
    }
    buf.advance(4);
    Ok(Some(buf.split_to(size).freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_checked_before_allocation() {
        assert!(check_size(*b"GET ", 100 << 20).is_err(), "HTTP is refused by its size");
        assert!(check_size([0x16, 0x03, 0x01, 0x02], 100 << 20).is_err(), "a TLS hello is refused");
        assert!(check_size(0i32.to_be_bytes(), 100).is_err());
        assert!(check_size((-5i32).to_be_bytes(), 100).is_err());
        assert!(check_size(101i32.to_be_bytes(), 100).is_err());
        assert_eq!(check_size(100i32.to_be_bytes(), 100).ok(), Some(100));
    }

    #[test]
    fn incomplete_is_not_an_error() {
        let mut buf = BytesMut::from(&[0u8, 0, 0, 3, 1, 2][..]);
        assert!(matches!(take_frame(&mut buf, 100), Ok(None)));
        buf.extend_from_slice(&[3, 0, 0]);
        let frame = take_frame(&mut buf, 100).ok().flatten();
        assert_eq!(frame.as_deref(), Some(&[1u8, 2, 3][..]));
        assert_eq!(&buf[..], &[0, 0]);
    }
}
