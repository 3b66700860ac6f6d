//! The small binary encoding every stored record uses: big-endian integers, strings
//! and byte strings behind a `u16` length, optional strings behind a flag byte.
//! [`Reader`] checks every length and answers `None` on anything short: a damaged
//! record never panics.

use bytes::BufMut;

/// Put a byte string behind its `u16` length (cut at 65,535 bytes).
pub fn put_bytes(b: &mut impl BufMut, s: &[u8]) {
    let s = &s[..s.len().min(u16::MAX as usize)];
    b.put_u16(s.len() as u16);
    b.put_slice(s);
}

/// Put a string behind its `u16` length.
pub fn put_str(b: &mut impl BufMut, s: &str) {
    put_bytes(b, s.as_bytes());
}

/// Put an optional string: a flag byte, then the string when present.
pub fn put_opt(b: &mut impl BufMut, s: Option<&str>) {
    match s {
        Some(s) => {
            b.put_u8(1);
            put_str(b, s);
        }
        None => b.put_u8(0),
    }
}

/// A bounds-checked reader over a record.
#[derive(Debug)]
pub struct Reader<'a>(pub &'a [u8]);

impl<'a> Reader<'a> {
    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    pub fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    pub fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    pub fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_be_bytes)
    }
    pub fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_be_bytes)
    }
    /// A byte string behind its `u16` length.
    pub fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()? as usize;
        self.take(n)
    }
    /// A string behind its `u16` length (invalid UTF-8 replaced).
    pub fn string(&mut self) -> Option<String> {
        self.bytes()
            .map(|b| String::from_utf8_lossy(b).into_owned())
    }
    /// An optional string (see [`put_opt`]).
    pub fn opt_string(&mut self) -> Option<Option<String>> {
        match self.u8()? {
            0 => Some(None),
            _ => Some(Some(self.string()?)),
        }
    }
    /// What is left.
    pub fn rest(&self) -> &'a [u8] {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_short_input() {
        let mut b = Vec::new();
        put_str(&mut b, "héllo");
        put_opt(&mut b, None);
        put_opt(&mut b, Some("x"));
        b.put_u64(7);
        let mut r = Reader(&b);
        assert_eq!(r.string().as_deref(), Some("héllo"));
        assert_eq!(r.opt_string(), Some(None));
        assert_eq!(r.opt_string(), Some(Some("x".into())));
        assert_eq!(r.u64(), Some(7));
        assert_eq!(r.u8(), None);
        assert_eq!(Reader(&[0, 5, b'a']).string(), None, "short");
    }
}
