//! The log's records on disk: `[length u32][crc32 u32][kind u8][body]`, little
//! endian, the CRC over kind and body. A scan stops at the first record that is
//! short or whose CRC fails: that is where a write was torn (a crash, a full disk)
//! or where the file was damaged. Free of IO.

use otpgw_core::wire::{Reader, put_str};

/// Bytes before a record's kind: length and CRC.
pub const HEADER: usize = 8;
/// Largest record accepted when reading (a length beyond it is damage).
pub const MAX_RECORD: usize = 1 << 20;

/// What a record says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rec<'a> {
    /// An accepted message (its binary record; the id is inside).
    Accept { id: u64, msg: &'a [u8] },
    /// An accepted message and its idempotency key, in one record (atomic).
    AcceptOnce {
        id: u64,
        msg: &'a [u8],
        key: String,
        value: &'a [u8],
        expires_ms: u64,
    },
    /// A message's carrier state (sent mark, carrier id, or attempts).
    State { id: u64, state: &'a [u8] },
    /// A message reached its final state; with the receipt owed to its brand.
    Finished {
        id: u64,
        done_ms: u64,
        receipt: Option<&'a [u8]>,
    },
    /// The brand acknowledged the receipt (or event) `id`.
    Forwarded { id: u64 },
    /// A job owed to a brand that is not a receipt (a fallback event).
    Owe {
        id: u64,
        done_ms: u64,
        job: &'a [u8],
    },
    /// A message's final status (HTTP messages).
    Status {
        id: u64,
        done_ms: u64,
        status: &'a [u8],
    },
    /// A key-value record's new version.
    Kv {
        key: String,
        version: u64,
        expires_ms: u64,
        value: &'a [u8],
    },
}

const ACCEPT: u8 = 1;
const ACCEPT_ONCE: u8 = 2;
const STATE: u8 = 3;
const FINISHED: u8 = 4;
const FORWARDED: u8 = 5;
const OWE: u8 = 6;
const STATUS: u8 = 7;
const KV: u8 = 8;

fn put_u64(b: &mut Vec<u8>, v: u64) {
    b.extend_from_slice(&v.to_be_bytes());
}

fn put_blob(b: &mut Vec<u8>, v: &[u8]) {
    b.extend_from_slice(&(v.len() as u32).to_be_bytes());
    b.extend_from_slice(v);
}

/// Append `r` to `out` as a framed record; returns its length in bytes.
pub fn encode(r: &Rec<'_>, out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0u8; HEADER]);
    match r {
        Rec::Accept { id, msg } => {
            out.push(ACCEPT);
            put_u64(out, *id);
            put_blob(out, msg);
        }
        Rec::AcceptOnce {
            id,
            msg,
            key,
            value,
            expires_ms,
        } => {
            out.push(ACCEPT_ONCE);
            put_u64(out, *id);
            put_blob(out, msg);
            out.extend_from_slice(&encode_kv_entry(key, 1, *expires_ms, value));
        }
        Rec::State { id, state } => {
            out.push(STATE);
            put_u64(out, *id);
            put_blob(out, state);
        }
        Rec::Finished {
            id,
            done_ms,
            receipt,
        } => {
            out.push(FINISHED);
            put_u64(out, *id);
            put_u64(out, *done_ms);
            match receipt {
                Some(r) => {
                    out.push(1);
                    put_blob(out, r);
                }
                None => out.push(0),
            }
        }
        Rec::Forwarded { id } => {
            out.push(FORWARDED);
            put_u64(out, *id);
        }
        Rec::Owe { id, done_ms, job } => {
            out.push(OWE);
            put_u64(out, *id);
            put_u64(out, *done_ms);
            put_blob(out, job);
        }
        Rec::Status {
            id,
            done_ms,
            status,
        } => {
            out.push(STATUS);
            put_u64(out, *id);
            put_u64(out, *done_ms);
            put_blob(out, status);
        }
        Rec::Kv {
            key,
            version,
            expires_ms,
            value,
        } => {
            out.push(KV);
            out.extend_from_slice(&encode_kv_entry(key, *version, *expires_ms, value));
        }
    }
    let body_len = out.len() - start - HEADER;
    let crc = crc32fast::hash(&out[start + HEADER..]);
    out[start..start + 4].copy_from_slice(&(body_len as u32).to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    out.len() - start
}

fn blob<'a>(r: &mut Reader<'a>) -> Option<&'a [u8]> {
    let n = r.u32()? as usize;
    r.take(n)
}

/// Decode a record's body (kind first).
pub fn decode(body: &[u8]) -> Option<Rec<'_>> {
    let mut r = Reader(body);
    Some(match r.u8()? {
        ACCEPT => Rec::Accept {
            id: r.u64()?,
            msg: blob(&mut r)?,
        },
        ACCEPT_ONCE => {
            let id = r.u64()?;
            let msg = blob(&mut r)?;
            let (key, _, expires_ms, value) = decode_kv_entry(r.rest())?;
            Rec::AcceptOnce {
                id,
                msg,
                key,
                value,
                expires_ms,
            }
        }
        STATE => Rec::State {
            id: r.u64()?,
            state: blob(&mut r)?,
        },
        FINISHED => {
            let id = r.u64()?;
            let done_ms = r.u64()?;
            let receipt = match r.u8()? {
                0 => None,
                _ => Some(blob(&mut r)?),
            };
            Rec::Finished {
                id,
                done_ms,
                receipt,
            }
        }
        FORWARDED => Rec::Forwarded { id: r.u64()? },
        OWE => Rec::Owe {
            id: r.u64()?,
            done_ms: r.u64()?,
            job: blob(&mut r)?,
        },
        STATUS => Rec::Status {
            id: r.u64()?,
            done_ms: r.u64()?,
            status: blob(&mut r)?,
        },
        KV => {
            let (key, version, expires_ms, value) = decode_kv_entry(r.rest())?;
            Rec::Kv {
                key,
                version,
                expires_ms,
                value,
            }
        }
        _ => return None,
    })
}

/// One record found by [`scan`]: where it starts, its whole length, its body.
#[derive(Debug)]
pub struct Found<'a> {
    pub offset: usize,
    pub len: usize,
    pub body: &'a [u8],
}

/// The records of `buf` in order, and the length of the valid prefix (where the
/// first short, damaged or unreadable record starts; `buf.len()` when there is
/// none).
pub fn scan(buf: &[u8]) -> (Vec<Found<'_>>, usize) {
    let mut out = Vec::new();
    let mut at = 0;
    while buf.len() - at >= HEADER {
        let len = u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]) as usize;
        let crc = u32::from_le_bytes([buf[at + 4], buf[at + 5], buf[at + 6], buf[at + 7]]);
        if len == 0 || len > MAX_RECORD || buf.len() - at - HEADER < len {
            break;
        }
        let body = &buf[at + HEADER..at + HEADER + len];
        if crc32fast::hash(body) != crc || decode(body).is_none() {
            break;
        }
        out.push(Found {
            offset: at,
            len: HEADER + len,
            body,
        });
        at += HEADER + len;
    }
    (out, at)
}

/// A key-value entry of the log store: key, version, expiry, then the value to the
/// end.
fn encode_kv_entry(key: &str, version: u64, expires_ms: u64, value: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(20 + key.len() + value.len());
    put_str(&mut b, key);
    b.extend_from_slice(&version.to_be_bytes());
    b.extend_from_slice(&expires_ms.to_be_bytes());
    b.extend_from_slice(value);
    b
}

/// (key, version, expiry, value) of a log store's key-value entry.
fn decode_kv_entry(buf: &[u8]) -> Option<(String, u64, u64, &[u8])> {
    let mut r = Reader(buf);
    let key = r.string()?;
    let v = r.u64()?;
    let e = r.u64()?;
    Some((key, v, e, r.rest()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<Rec<'static>> {
        vec![
            Rec::Accept {
                id: 1,
                msg: b"message",
            },
            Rec::AcceptOnce {
                id: 2,
                msg: b"m2",
                key: "idem:bank:k".into(),
                value: b"v",
                expires_ms: 9,
            },
            Rec::State { id: 1, state: b"s" },
            Rec::Finished {
                id: 1,
                done_ms: 5,
                receipt: Some(b"r"),
            },
            Rec::Finished {
                id: 2,
                done_ms: 6,
                receipt: None,
            },
            Rec::Forwarded { id: 1 },
            Rec::Owe {
                id: 3,
                done_ms: 7,
                job: b"j",
            },
            Rec::Status {
                id: 2,
                done_ms: 6,
                status: b"st",
            },
            Rec::Kv {
                key: "ver:x".into(),
                version: 3,
                expires_ms: 10,
                value: b"val",
            },
        ]
    }

    #[test]
    fn every_kind_round_trips_and_a_torn_tail_stops_the_scan() {
        let mut buf = Vec::new();
        let recs = all();
        let mut ends = Vec::new();
        for r in &recs {
            encode(r, &mut buf);
            ends.push(buf.len());
        }
        let (found, valid) = scan(&buf);
        assert_eq!(valid, buf.len());
        let back: Vec<Rec<'_>> = found.iter().map(|f| decode(f.body).unwrap()).collect();
        assert_eq!(back, recs);
        for cut in 0..buf.len() {
            let (found, valid) = scan(&buf[..cut]);
            let whole = ends.iter().filter(|e| **e <= cut).count();
            assert_eq!(found.len(), whole, "cut at {cut}");
            assert_eq!(valid, if whole == 0 { 0 } else { ends[whole - 1] });
        }
        // A flipped bit in a body ends the scan there.
        let mut bad = buf.clone();
        bad[ends[2] + HEADER + 3] ^= 0x10;
        assert_eq!(scan(&bad).0.len(), 3);
    }
}
