//! Blocking reads that wait for input with `poll(2)` before they read.
//!
//! A thread blocked in `recv` on a Unix socket sleeps on the socket's one wait queue, which the kernel also wakes
//! when the peer consumes what this end sent (write space: `unix_write_space` wakes every sleeper, whatever it
//! waits for). A request/answer exchange on a local socket then woke each end twice: once when the other side read
//! the frame just written (for nothing: the thread finds no input and sleeps again) and once for the answer. A
//! `poll` for `POLLIN` only is woken for input alone, so a round trip costs one wake-up on each end (measured on
//! a redundancy-2 sysbench insert run: about 13 context switches of the server processes per insert before, 10
//! after; docs/benchmarks.md). Tokio's sockets (the async client's) register for write space as well, so a parked
//! runtime is still woken by it; not changed here.

use std::io::{BufReader, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

/// The read buffer of a blocking connection (both ends): a frame up to this size, header and body, usually comes in
/// one `read` call instead of two; a larger body is read past the buffer, straight into its own allocation.
const READ_BUFFER_BYTES: usize = 16 * 1024;

/// A blocking connection as both ends read it: through a buffer, each read after waiting for input for at most
/// `timeout`. Writes go to the socket (`get_mut`).
pub(crate) fn buffered<S: AsFd + Read>(socket: S, timeout: Option<Duration>) -> BufReader<PolledReads<S>> {
    BufReader::with_capacity(READ_BUFFER_BYTES, PolledReads::new(socket, timeout))
}

/// A socket whose reads first wait for input (`POLLIN`) for at most `timeout` (None: without limit). A wait that
/// times out fails with `WouldBlock`, as a read past a socket's `SO_RCVTIMEO` does: this timeout is the only one
/// reads have (after a `poll` that found input a `read` does not block), so the sockets need no `SO_RCVTIMEO`.
pub(crate) struct PolledReads<S> {
    socket: S,
    timeout: Option<Duration>,
}

impl<S> PolledReads<S> {
    pub(crate) fn new(socket: S, timeout: Option<Duration>) -> PolledReads<S> {
        PolledReads { socket, timeout }
    }

    pub(crate) fn get_ref(&self) -> &S {
        &self.socket
    }

    pub(crate) fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    pub(crate) fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.timeout = timeout;
    }
}

impl<S: AsFd + Read> Read for PolledReads<S> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        wait_readable(&self.socket, self.timeout)?;
        self.socket.read(buf)
    }
}

impl<S: Write> Write for PolledReads<S> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.socket.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.socket.flush()
    }
}

/// Waits until `socket` has input, an end of stream or an error to report (a read then returns at once), for at
/// most `timeout`.
fn wait_readable(socket: &impl AsFd, timeout: Option<Duration>) -> std::io::Result<()> {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let wait_ms: libc::c_int = match deadline {
            None => -1,
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                // Rounded up: a wait of 0.4 ms must not become a poll that returns at once forever.
                libc::c_int::try_from(left.as_micros().div_ceil(1000)).unwrap_or(libc::c_int::MAX)
            }
        };
        let mut fd = libc::pollfd { fd: socket.as_fd().as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd, borrowed for the call; the descriptor stays open while `socket` is borrowed.
        let ready = unsafe { libc::poll(&mut fd, 1, wait_ms) };
        match ready {
            1.. => return Ok(()),
            0 if wait_ms == 0 => return Err(std::io::ErrorKind::WouldBlock.into()),
            0 => continue,
            _ => {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    #[test]
    fn a_read_waits_for_input_and_times_out_without_it() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let mut reads = PolledReads::new(a, Some(Duration::from_millis(50)));
        let mut buf = [0u8; 8];
        let e = reads.read(&mut buf).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock, "no input within the timeout");
        b.write_all(b"hello").unwrap();
        assert_eq!(reads.read(&mut buf).unwrap(), 5);
        assert_eq!(&buf[..5], b"hello");
        drop(b);
        assert_eq!(reads.read(&mut buf).unwrap(), 0, "the end of stream is reported, not waited on");
    }

    /// This thread's voluntary context switches so far (each time it blocked and was woken).
    fn voluntary_switches() -> u64 {
        let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("voluntary_ctxt_switches:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    #[test]
    fn a_waiting_read_is_not_woken_when_the_peer_reads_what_this_end_sent() {
        // The request/answer exchange: this end sends, waits for the answer; the peer reads the request a while
        // later (while this end sleeps: a plain `recv` was woken then) and answers later still.
        let (a, mut b) = UnixStream::pair().unwrap();
        let peer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            let mut request = [0u8; 7];
            b.read_exact(&mut request).unwrap();
            std::thread::sleep(Duration::from_millis(50));
            b.write_all(b"answer").unwrap();
        });
        let mut reads = PolledReads::new(a, Some(Duration::from_secs(10)));
        reads.write_all(b"request").unwrap();
        let before = voluntary_switches();
        let mut buf = [0u8; 6];
        reads.read_exact(&mut buf).unwrap();
        let woken = voluntary_switches() - before;
        assert_eq!(&buf, b"answer");
        assert!(woken <= 1, "the read slept {woken} times for one answer");
        peer.join().unwrap();
    }

    #[test]
    fn a_read_without_timeout_returns_what_arrives_later() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            b.write_all(b"late").unwrap();
        });
        let mut reads = PolledReads::new(a, None);
        let mut buf = [0u8; 8];
        assert_eq!(reads.read(&mut buf).unwrap(), 4);
        writer.join().unwrap();
    }
}
