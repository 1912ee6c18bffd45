//! The wire format: each message is a 4-byte big-endian length followed by that many bytes of postcard. Frames are
//! bounded by `FRAME_BYTES_MAX` so a corrupt or hostile length cannot make a node allocate without limit.

use serde::{Serialize, de::DeserializeOwned};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::RpcError;

/// Upper bound for one message (a gathered result set travels in one frame).
pub const FRAME_BYTES_MAX: u32 = 1 << 30;

/// One message as the bytes of a frame: length prefix and postcard body.
fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, RpcError> {
    let bytes = postcard::to_stdvec(msg).map_err(|e| RpcError::Encode(e.to_string()))?;
    let len = u32::try_from(bytes.len()).ok().filter(|l| *l <= FRAME_BYTES_MAX).ok_or(RpcError::FrameTooLarge)?;
    let mut buf = Vec::with_capacity(4 + bytes.len());
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(&bytes);
    Ok(buf)
}

/// The body length a frame header announces, refused beyond `max_bytes`.
fn body_len(header: [u8; 4], max_bytes: u32) -> Result<usize, RpcError> {
    let len = u32::from_be_bytes(header);
    if len > max_bytes {
        return Err(RpcError::FrameTooLarge);
    }
    Ok(len as usize)
}

pub async fn write_frame<W: AsyncWrite + Unpin, T: Serialize>(w: &mut W, msg: &T) -> Result<(), RpcError> {
    let buf = encode(msg)?;
    w.write_all(&buf).await?;
    w.flush().await?;
    Ok(())
}

/// Reads one frame; `Ok(None)` on a clean end of stream before any byte of the frame.
pub async fn read_frame<R: AsyncRead + Unpin, T: DeserializeOwned>(r: &mut R) -> Result<Option<T>, RpcError> {
    read_frame_max(r, FRAME_BYTES_MAX).await
}

/// [`read_frame`] refusing frames beyond `max_bytes` (before authentication).
pub async fn read_frame_max<R: AsyncRead + Unpin, T: DeserializeOwned>(
    r: &mut R,
    max_bytes: u32,
) -> Result<Option<T>, RpcError> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let mut body = vec![0u8; body_len(len, max_bytes)?];
    r.read_exact(&mut body).await?;
    postcard::from_bytes(&body).map(Some).map_err(|e| RpcError::Decode(e.to_string()))
}

/// Blocking twin of [`write_frame`], for connections served on their own thread.
pub fn write_frame_sync<W: std::io::Write, T: Serialize>(w: &mut W, msg: &T) -> Result<(), RpcError> {
    let buf = encode(msg)?;
    w.write_all(&buf)?;
    w.flush()?;
    Ok(())
}

/// Blocking twin of [`read_frame`].
pub fn read_frame_sync<R: std::io::Read, T: DeserializeOwned>(r: &mut R) -> Result<Option<T>, RpcError> {
    read_frame_sync_max(r, FRAME_BYTES_MAX)
}

/// Blocking twin of [`read_frame_max`].
pub fn read_frame_sync_max<R: std::io::Read, T: DeserializeOwned>(
    r: &mut R,
    max_bytes: u32,
) -> Result<Option<T>, RpcError> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let mut body = vec![0u8; body_len(len, max_bytes)?];
    r.read_exact(&mut body)?;
    postcard::from_bytes(&body).map(Some).map_err(|e| RpcError::Decode(e.to_string()))
}
