//! Kafka framing: every request and response is a big-endian i32 size followed by that many
//! bytes. Deciding whether a whole frame is buffered is separate from parsing it: a partial
//! frame is a normal outcome, not an error.

use thiserror::Error;

/// Bytes of the size prefix.
pub const SIZE_PREFIX_LEN: usize = 4;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame size {size} exceeds the limit of {max} bytes (socket.request.max.bytes)")]
    TooLarge { size: i64, max: usize },
    #[error("negative frame size {0}")]
    Negative(i32),
}

/// Checks whether `buf` starts with a whole frame. Returns the payload length when it does,
/// `Ok(None)` when more bytes are needed, and an error when the size prefix is unacceptable
/// (the connection must then be closed: the stream cannot be resynchronised).
pub fn check(buf: &[u8], max: usize) -> Result<Option<usize>, FrameError> {
    if buf.len() < SIZE_PREFIX_LEN {
        return Ok(None);
    }
    let size = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if size < 0 {
        return Err(FrameError::Negative(size));
    }
    let size = size as usize;
    if size > max {
        return Err(FrameError::TooLarge { size: size as i64, max });
    }
    if buf.len() < SIZE_PREFIX_LEN + size {
        return Ok(None);
    }
    Ok(Some(size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_and_whole_frames() {
        assert_eq!(check(&[0, 0], 100), Ok(None));
        assert_eq!(check(&[0, 0, 0, 3, 1, 2], 100), Ok(None));
        assert_eq!(check(&[0, 0, 0, 3, 1, 2, 3, 9], 100), Ok(Some(3)));
        assert_eq!(check(&[0, 0, 1, 0], 100), Err(FrameError::TooLarge { size: 256, max: 100 }));
        assert_eq!(check(&[0xff, 0xff, 0xff, 0xff], 100), Err(FrameError::Negative(-1)));
    }
}
