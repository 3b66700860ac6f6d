//! The ids brands see: a keyed permutation of otpgw's message ids.
//!
//! otpgw numbers its messages with a counter ([`crate::message::IdGen`]): cheap,
//! unique across restarts, and kind to the store's B-trees, which append in id
//! order. Shown as it is, a counter tells a brand the gateway's volume and lets it
//! guess another brand's ids. So every door shows a [`PublicId`] instead: the
//! counter's low 55 bits enciphered with a 4-round Feistel network over 56 bits
//! (SipHash-1-3 under the gateway's 128-bit key as the round function; a value at
//! or past 2^55 is enciphered again, "cycle walking", so the result stays below
//! 2^55 and never touches [`crate::outbox::FALLBACK_BIT`]). The top byte (a
//! node's number on Redis) is kept. The public form is still 16 lower-case hex
//! digits, a valid SMPP `message_id`, and the mapping is one-to-one, so an id a
//! brand quotes back (status, receipts) finds its message. The key is made once
//! per store and kept in it (shared by the nodes of a Redis store).

use std::fmt;
use std::hash::Hasher;

use siphasher::sip::SipHasher13;

use crate::message::MsgId;

/// Bits of the counter that are enciphered.
const LOW: u32 = 55;
const LOW_MASK: u64 = (1 << LOW) - 1;
/// The Feistel network's halves (56 bits in all).
const HALF: u32 = 28;
const HALF_MASK: u64 = (1 << HALF) - 1;
const ROUNDS: u8 = 4;

/// A message id as brands see it (see the module docs). Printed as 16 lower-case
/// hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicId(pub u64);

impl fmt::Display for PublicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for PublicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The keyed permutation between [`MsgId`] and [`PublicId`].
#[derive(Clone)]
pub struct IdCipher {
    k0: u64,
    k1: u64,
}

impl fmt::Debug for IdCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IdCipher(..)")
    }
}

impl IdCipher {
    /// A cipher under `key` (16 random bytes, kept with the store).
    pub fn new(key: [u8; 16]) -> Self {
        let (a, b) = key.split_at(8);
        let word = |s: &[u8]| {
            let mut w = [0u8; 8];
            w.copy_from_slice(s);
            u64::from_le_bytes(w)
        };
        Self {
            k0: word(a),
            k1: word(b),
        }
    }

    fn round(&self, i: u8, half: u64) -> u64 {
        let mut h = SipHasher13::new_with_keys(self.k0, self.k1);
        h.write_u8(i);
        h.write_u64(half);
        h.finish() & HALF_MASK
    }

    fn encipher56(&self, x: u64) -> u64 {
        let (mut l, mut r) = (x >> HALF, x & HALF_MASK);
        for i in 0..ROUNDS {
            (l, r) = (r, l ^ self.round(i, r));
        }
        (l << HALF) | r
    }

    fn decipher56(&self, x: u64) -> u64 {
        let (mut l, mut r) = (x >> HALF, x & HALF_MASK);
        for i in (0..ROUNDS).rev() {
            (l, r) = (r ^ self.round(i, l), l);
        }
        (l << HALF) | r
    }

    /// The id brands see for `id`.
    pub fn hide(&self, id: MsgId) -> PublicId {
        let mut x = id.0 & LOW_MASK;
        loop {
            x = self.encipher56(x);
            if x <= LOW_MASK {
                return PublicId((id.0 & !LOW_MASK) | x);
            }
        }
    }

    /// The message id behind `p`; `None` for a value no message id hides to (bit
    /// 55 set).
    pub fn reveal(&self, p: PublicId) -> Option<MsgId> {
        if p.0 & (1 << LOW) != 0 {
            return None;
        }
        let mut x = p.0 & LOW_MASK;
        loop {
            x = self.decipher56(x);
            if x <= LOW_MASK {
                return Some(MsgId((p.0 & !LOW_MASK) | x));
            }
        }
    }

    /// The message id behind the 16-hex-digit form a brand sent, if it is one.
    pub fn parse(&self, s: &str) -> Option<MsgId> {
        if s.len() != 16 {
            return None;
        }
        self.reveal(PublicId(u64::from_str_radix(s, 16).ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEY: [u8; 16] = *b"0123456789abcdef";

    #[test]
    fn consecutive_ids_look_unrelated_and_keep_their_node() {
        let c = IdCipher::new(KEY);
        let base = (7u64 << 56) | 1_765_000_000_000_000;
        let shown: Vec<PublicId> = (0..4).map(|i| c.hide(MsgId(base + i))).collect();
        for w in shown.windows(2) {
            let diff = w[0].0 ^ w[1].0;
            assert!(
                diff.count_ones() >= 8,
                "{:?} and {:?} look related",
                w[0],
                w[1]
            );
        }
        for (i, p) in shown.iter().enumerate() {
            assert_eq!(p.0 >> 56, 7, "node byte kept");
            assert_eq!(p.0 & (1 << 55), 0, "never the fallback bit");
            assert_eq!(c.parse(&p.to_string()), Some(MsgId(base + i as u64)));
            assert_eq!(p.to_string().len(), 16);
        }
        let other = IdCipher::new(*b"fedcba9876543210");
        assert_ne!(other.hide(MsgId(base)), shown[0], "another key, other ids");
        assert_eq!(c.parse("0080000000000000"), None, "bit 55: no message's id");
        assert_eq!(c.parse("12345"), None);
        assert_eq!(c.parse("zzzzzzzzzzzzzzzz"), None);
    }

    proptest! {
        #[test]
        fn reveal_undoes_hide(id in any::<u64>(), key in any::<[u8; 16]>()) {
            let id = MsgId(id & !(1 << 55));
            let c = IdCipher::new(key);
            let p = c.hide(id);
            prop_assert_eq!(p.0 & (1 << 55), 0);
            prop_assert_eq!(c.reveal(p), Some(id));
        }
    }

    #[test]
    fn a_permutation_on_a_small_range() {
        // 100,000 consecutive ids give 100,000 different public ids.
        let c = IdCipher::new(KEY);
        let mut seen = std::collections::HashSet::new();
        for i in 0..100_000u64 {
            assert!(seen.insert(c.hide(MsgId(1_765_000_000_000_000 + i))));
        }
    }
}
