//! MySQL packet framing over any async byte stream: a 3-byte little-endian payload length and a 1-byte sequence id,
//! payloads of 2^24-1 bytes or more split across several packets. It owns the sequence counter and the size limit;
//! it knows nothing about what payloads mean.
//!
//! Reads are bounded: a logical packet larger than the limit is refused from its header alone, before its body is
//! read, and the body buffer grows only as bytes actually arrive. Writes are buffered and sent on `flush` (or when
//! the buffer grows past `FLUSH_BYTES`), so one reply costs one syscall in the common case.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

/// Payload length that means "more packets follow".
pub(crate) const MAX_CHUNK: usize = 0xFF_FFFF;
/// Buffered output is written out once it exceeds this, so large result sets stream instead of piling up.
const FLUSH_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    #[error("connection closed")]
    Closed,
    #[error("packet of {declared_bytes}+ bytes exceeds the limit")]
    TooLarge { declared_bytes: u64 },
    #[error("packet sequence id {got}, expected {expected}")]
    OutOfSequence { got: u8, expected: u8 },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

pub(crate) struct Framed<S> {
    stream: BufReader<S>,
    out: Vec<u8>,
    seq: u8,
    max_packet_bytes: u32,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Framed<S> {
    pub(crate) fn new(stream: S, max_packet_bytes: u32) -> Self {
        Framed { stream: BufReader::new(stream), out: Vec::new(), seq: 0, max_packet_bytes }
    }

    /// Starts a new command exchange: the client's next packet carries sequence id 0.
    pub(crate) fn reset_sequence(&mut self) {
        self.seq = 0;
    }

    /// Reads one logical packet (reassembling split ones). `Closed` means the peer went away cleanly between packets.
    pub(crate) async fn read(&mut self) -> Result<Vec<u8>, ReadError> {
        let mut payload = Vec::new();
        let mut first = true;
        loop {
            let mut header = [0u8; 4];
            if let Err(e) = self.stream.read_exact(&mut header).await {
                return Err(if first && e.kind() == std::io::ErrorKind::UnexpectedEof {
                    ReadError::Closed
                } else {
                    e.into()
                });
            }
            first = false;
            let len = usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
            if header[3] != self.seq {
                return Err(ReadError::OutOfSequence { got: header[3], expected: self.seq });
            }
            self.seq = self.seq.wrapping_add(1);
            let total = payload.len() as u64 + len as u64;
            if total > u64::from(self.max_packet_bytes) {
                return Err(ReadError::TooLarge { declared_bytes: total });
            }
            let read = (&mut self.stream).take(len as u64).read_to_end(&mut payload).await?;
            if read < len {
                return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
            }
            if len < MAX_CHUNK {
                return Ok(payload);
            }
        }
    }

    /// Queues one logical packet, splitting it as the protocol requires.
    pub(crate) async fn write(&mut self, payload: &[u8]) -> std::io::Result<()> {
        let mut rest = payload;
        loop {
            let chunk_len = rest.len().min(MAX_CHUNK);
            let (chunk, tail) = rest.split_at(chunk_len);
            self.out.extend_from_slice(&(chunk_len as u32).to_le_bytes()[..3]);
            self.out.push(self.seq);
            self.seq = self.seq.wrapping_add(1);
            self.out.extend_from_slice(chunk);
            rest = tail;
            // A chunk of exactly MAX_CHUNK bytes tells the peer to expect another, possibly empty, packet.
            if chunk_len < MAX_CHUNK {
                break;
            }
        }
        if self.out.len() > FLUSH_BYTES {
            self.flush().await?;
        }
        Ok(())
    }

    pub(crate) async fn flush(&mut self) -> std::io::Result<()> {
        if !self.out.is_empty() {
            self.stream.get_mut().write_all(&self.out).await?;
            self.out.clear();
        }
        self.stream.get_mut().flush().await
    }

    /// Closes the write side after sending anything buffered, so the client sees our last packet before EOF.
    pub(crate) async fn shutdown(&mut self) {
        let _ = self.flush().await;
        let _ = self.stream.get_mut().shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn split_packets_reassemble_across_the_chunk_boundary() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let mut writer = Framed::new(a, u32::MAX);
        let mut reader = Framed::new(b, u32::MAX);
        let big: Vec<u8> = (0..MAX_CHUNK + 10).map(|i| i as u8).collect();
        let exact = vec![7u8; MAX_CHUNK];
        let send = async {
            writer.write(&big).await.unwrap();
            writer.write(&exact).await.unwrap();
            writer.write(b"tail").await.unwrap();
            writer.flush().await.unwrap();
        };
        let receive = async {
            let first = reader.read().await.unwrap();
            let second = reader.read().await.unwrap();
            let third = reader.read().await.unwrap();
            (first, second, third)
        };
        let ((), (first, second, third)) = tokio::join!(send, receive);
        assert_eq!(first, big);
        assert_eq!(second, exact);
        assert_eq!(third, b"tail");
    }

    #[tokio::test]
    async fn an_oversized_header_is_refused_before_its_body_arrives() {
        let (mut a, b) = tokio::io::duplex(64);
        let mut reader = Framed::new(b, 1024);
        // Declares 16 MiB - 1 but sends no body: the reader must answer from the header alone.
        a.write_all(&[0xFF, 0xFF, 0xFF, 0]).await.unwrap();
        assert!(matches!(reader.read().await, Err(ReadError::TooLarge { .. })));
    }

    #[tokio::test]
    async fn a_wrong_sequence_id_is_an_error() {
        let (mut a, b) = tokio::io::duplex(64);
        let mut reader = Framed::new(b, 1024);
        a.write_all(&[1, 0, 0, 5, 0x0e]).await.unwrap();
        assert!(matches!(reader.read().await, Err(ReadError::OutOfSequence { got: 5, expected: 0 })));
    }

    #[tokio::test]
    async fn eof_between_packets_is_a_clean_close() {
        let (a, b) = tokio::io::duplex(64);
        drop(a);
        let mut reader = Framed::new(b, 1024);
        assert!(matches!(reader.read().await, Err(ReadError::Closed)));
    }
}
