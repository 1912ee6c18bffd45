//! Payloads of the generic server responses: OK, EOF (and its OK-shaped replacement under CLIENT_DEPRECATE_EOF) and
//! ERR. Result sets are in `resultset.rs`; framing is in `packet.rs`.

use mysql_common::constants::{CapabilityFlags, StatusFlags};

use crate::MysqlError;
use crate::wire::{put_lenenc_bytes, put_lenenc_int, put_u16};

/// An OK packet; `warnings` is the number of conditions the statement raised (what `@@warning_count` then says).
pub(crate) fn ok(affected_rows: u64, last_insert_id: u64, status: StatusFlags, warnings: u16, info: &str) -> Vec<u8> {
    let mut out = vec![0x00];
    put_lenenc_int(&mut out, affected_rows);
    put_lenenc_int(&mut out, last_insert_id);
    put_u16(&mut out, status.bits());
    put_u16(&mut out, warnings);
    // The protocol documentation says string<EOF>, but MySQL (`net_send_ok`) writes a length-encoded string, and
    // clients parse it that way.
    if !info.is_empty() {
        put_lenenc_bytes(&mut out, info.as_bytes());
    }
    out
}

/// The packet that ends column definitions or rows: a classic EOF packet, or with CLIENT_DEPRECATE_EOF an OK packet
/// with the 0xFE header (which the client tells apart from a row by its header and short length).
/// Both carry the statement's warning count.
pub(crate) fn end_of_rows(caps: CapabilityFlags, status: StatusFlags, warnings: u16) -> Vec<u8> {
    if caps.contains(CapabilityFlags::CLIENT_DEPRECATE_EOF) {
        let mut out = ok(0, 0, status, warnings, "");
        out[0] = 0xFE;
        out
    } else {
        eof(status, warnings)
    }
}

/// A classic EOF packet; also sent without CLIENT_DEPRECATE_EOF between column definitions and rows.
pub(crate) fn eof(status: StatusFlags, warnings: u16) -> Vec<u8> {
    let mut out = vec![0xFE];
    put_u16(&mut out, warnings);
    put_u16(&mut out, status.bits());
    out
}

/// The warning count as the packets carry it: MySQL's 16 bits, saturated (`@@warning_count` is not).
pub(crate) fn warning_count(count: usize) -> u16 {
    u16::try_from(count).unwrap_or(u16::MAX)
}

pub(crate) fn err(error: &MysqlError) -> Vec<u8> {
    let mut out = vec![0xFF];
    put_u16(&mut out, error.code);
    out.push(b'#');
    out.extend_from_slice(error.wire_sqlstate().as_bytes());
    out.extend_from_slice(error.message.as_bytes());
    out
}

/// An ERR packet sent before the client has said it speaks protocol 4.1 (in place of the handshake): without the
/// `#SQLSTATE` marker, which such clients would otherwise read as part of the message.
pub(crate) fn err_before_handshake(error: &MysqlError) -> Vec<u8> {
    let mut out = vec![0xFF];
    put_u16(&mut out, error.code);
    out.extend_from_slice(error.message.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn err_packet_layout() {
        let packet = err(&MysqlError::new(1045, "28000", "no"));
        assert_eq!(packet, b"\xFF\x15\x04#28000no");
        let bad_state = err(&MysqlError::new(1, "x", "m"));
        assert_eq!(&bad_state[3..9], b"#HY000");
    }

    #[test]
    fn ok_packet_layout() {
        let packet = ok(300, 7, StatusFlags::SERVER_STATUS_AUTOCOMMIT, 0, "hi");
        assert_eq!(packet, b"\x00\xFC\x2C\x01\x07\x02\x00\x00\x00\x02hi");
        assert_eq!(ok(0, 0, StatusFlags::empty(), 0, ""), b"\x00\x00\x00\x00\x00\x00\x00");
    }

    #[test]
    fn warning_counts_travel_after_the_status_flags() {
        // OK: header, affected rows, last insert id, status (2 bytes), warnings (2 bytes, little-endian).
        assert_eq!(ok(0, 0, StatusFlags::SERVER_STATUS_AUTOCOMMIT, 3, ""), b"\x00\x00\x00\x02\x00\x03\x00");
        // Classic EOF: header, warnings, then status.
        assert_eq!(eof(StatusFlags::SERVER_STATUS_AUTOCOMMIT, 258), b"\xFE\x02\x01\x02\x00");
        let deprecated = end_of_rows(CapabilityFlags::CLIENT_DEPRECATE_EOF, StatusFlags::empty(), 2);
        assert_eq!(deprecated, b"\xFE\x00\x00\x00\x00\x02\x00");
        assert_eq!(end_of_rows(CapabilityFlags::empty(), StatusFlags::empty(), 1), b"\xFE\x01\x00\x00\x00");
        assert_eq!(warning_count(70_000), u16::MAX);
    }
}
