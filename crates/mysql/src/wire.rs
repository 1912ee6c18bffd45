//! Primitive MySQL wire encodings inside one packet payload: little-endian integers, length-encoded integers and
//! strings, NUL-terminated strings. Reading never panics and never allocates more than the payload it reads from:
//! every read checks the remaining length and reports a malformed payload instead. Framing lives in `packet.rs`.

/// A payload did not have the shape its command requires.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed packet")]
pub(crate) struct Malformed;

/// A cursor over one payload.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if n > self.bytes.len() {
            return Err(Malformed);
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.bytes)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, Malformed> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, Malformed> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, Malformed> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], Malformed> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// A length-encoded integer. 0xFB (NULL) and 0xFF (error) are not integers and count as malformed here.
    pub(crate) fn lenenc_int(&mut self) -> Result<u64, Malformed> {
        match self.u8()? {
            n @ 0..=0xFA => Ok(u64::from(n)),
            0xFC => Ok(u64::from(self.u16()?)),
            0xFD => {
                let b: [u8; 3] = self.array()?;
                Ok(u64::from(b[0]) | u64::from(b[1]) << 8 | u64::from(b[2]) << 16)
            }
            0xFE => self.u64(),
            _ => Err(Malformed),
        }
    }

    /// Length-encoded bytes. The declared length is checked against what the payload holds before anything is read,
    /// so a lying length cannot cause an allocation.
    pub(crate) fn lenenc_bytes(&mut self) -> Result<&'a [u8], Malformed> {
        let len = self.lenenc_int()?;
        let len = usize::try_from(len).map_err(|_| Malformed)?;
        self.take(len)
    }

    /// Bytes up to a NUL, which is consumed. A missing NUL is malformed.
    pub(crate) fn null_terminated(&mut self) -> Result<&'a [u8], Malformed> {
        let end = self.bytes.iter().position(|&c| c == 0).ok_or(Malformed)?;
        let out = self.take(end)?;
        self.take(1)?;
        Ok(out)
    }
}

pub(crate) fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}

pub(crate) fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

pub(crate) fn put_lenenc_int(out: &mut Vec<u8>, v: u64) {
    match v {
        0..=0xFA => out.push(v as u8),
        0xFB..=0xFFFF => {
            out.push(0xFC);
            out.extend_from_slice(&(v as u16).to_le_bytes());
        }
        0x1_0000..=0xFF_FFFF => {
            out.push(0xFD);
            out.extend_from_slice(&(v as u32).to_le_bytes()[..3]);
        }
        _ => {
            out.push(0xFE);
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
}

pub(crate) fn put_lenenc_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_lenenc_int(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

pub(crate) fn put_null_terminated(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(bytes);
    out.push(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenenc_ints_round_trip_at_every_width_boundary() {
        for v in [0, 250, 251, 0xFFFF, 0x1_0000, 0xFF_FFFF, 0x100_0000, u64::MAX] {
            let mut buf = Vec::new();
            put_lenenc_int(&mut buf, v);
            let mut r = Reader::new(&buf);
            assert_eq!(r.lenenc_int(), Ok(v));
            assert!(r.is_empty());
        }
    }

    #[test]
    fn short_payloads_are_malformed_not_panics() {
        assert_eq!(Reader::new(&[0xFC, 1]).lenenc_int(), Err(Malformed));
        assert_eq!(Reader::new(&[0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]).lenenc_bytes(), Err(Malformed));
        assert_eq!(Reader::new(b"abc").null_terminated(), Err(Malformed));
        assert_eq!(Reader::new(&[1, 2, 3]).u32(), Err(Malformed));
        assert_eq!(Reader::new(&[0xFB]).lenenc_int(), Err(Malformed));
    }
}
