//! The names of the backend's keys, under the configured prefix (see the
//! module docs of [`super`]).
//!
//! On one Redis (a URL or Sentinels) there is one partition and the names are
//! `P:...`. On a Redis Cluster the message keys are spread over `partitions`
//! partitions, each a hash tag `{P:k}` (so one partition's keys share a slot and a
//! Lua script may touch several of them): a message lives in partition `id % n`
//! (its stream entry, carrier state, status and the receipt owed for it), a
//! key-value record in [`otpgw_core::store::key_partition`] of its key (an
//! idempotency key and its message share one: the acceptor picks such ids). Keys of
//! the whole node (its number, inbox, presence per brand, published receipts) are
//! in partition 0; the alive key is copied into every partition, so a claim checks
//! it in the same step as it takes the entries.

use super::RedisConfig;

impl RedisConfig {
    /// The number of partitions (1 unless on a Cluster).
    pub(super) fn parts(&self) -> u16 {
        if self.cluster.is_some() {
            self.partitions.max(1)
        } else {
            1
        }
    }
    /// Every partition.
    pub(super) fn all_parts(&self) -> std::ops::Range<u16> {
        0..self.parts()
    }
    /// The partition of message `id`.
    pub(super) fn part_of(&self, id: u64) -> u16 {
        (id % u64::from(self.parts())) as u16
    }
    /// The partition of key-value key `key`.
    pub(super) fn part_of_key(&self, key: &str) -> u16 {
        otpgw_core::store::key_partition(key, u64::from(self.parts())) as u16
    }
    /// The Cluster slot of partition `k`'s keys: CRC16 (XMODEM) of its hash tag,
    /// modulo 16384, as Redis computes it.
    pub(super) fn slot_of_part(&self, k: u16) -> u16 {
        slot_of_tag(format!("{}:{k}", self.prefix).as_bytes())
    }
    /// The name prefix of partition `k`: `P` on one Redis, `{P:k}` on a Cluster.
    fn part(&self, k: u16) -> String {
        if self.cluster.is_some() {
            format!("{{{}:{k}}}", self.prefix)
        } else {
            self.prefix.clone()
        }
    }
    pub(super) fn kv(&self, key: &str) -> String {
        format!("{}:kv:{key}", self.part(self.part_of_key(key)))
    }
    pub(super) fn status(&self, id: u64) -> String {
        format!("{}:st:{id}", self.part(self.part_of(id)))
    }
    pub(super) fn counter(&self, key: &str) -> String {
        format!("{}:cnt:{key}", self.prefix)
    }
    pub(super) fn alive(&self, k: u16, node: &str) -> String {
        format!("{}:alive:{node}", self.part(k))
    }
    pub(super) fn receipts_of(&self, k: u16, node: &str) -> String {
        format!("{}:receipts:{node}", self.part(k))
    }
    pub(super) fn rcpt(&self) -> String {
        format!("{}:rcpt", self.part(0))
    }
    pub(super) fn inbox(&self, node: &str) -> String {
        format!("{}:inbox:{node}", self.part(0))
    }
    pub(super) fn bound(&self, brand: &str) -> String {
        format!("{}:bound:{brand}", self.part(0))
    }
    /// The number of partitions the nodes of this prefix use (on a Cluster).
    pub(super) fn partitions_key(&self) -> String {
        format!("{}:partitions", self.part(0))
    }
    /// The registry of node ids and its counter (one step: one slot).
    pub(super) fn node_numbers(&self) -> (String, String) {
        let p = self.part(0);
        (format!("{p}:nodes"), format!("{p}:node_seq"))
    }
    pub(super) fn stream(&self, k: u16) -> String {
        format!("{}:msgs", self.part(k))
    }
    pub(super) fn state(&self, k: u16) -> String {
        format!("{}:state", self.part(k))
    }
    /// This node's receipts owed in partition `k`.
    pub(super) fn receipts(&self, k: u16) -> String {
        self.receipts_of(k, &self.node)
    }
}

/// The slot of a hash tag's content (CRC16 XMODEM: polynomial 0x1021, start 0).
fn slot_of_tag(tag: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in tag {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_as_redis_computes_them() {
        // The CRC's check value, and `CLUSTER KEYSLOT` of Redis 7.
        assert_eq!(slot_of_tag(b"123456789"), 0x31C3);
        assert_eq!(slot_of_tag(b"foo"), 12182);
        assert_eq!(slot_of_tag(b"otpgw:0"), slot_of_tag(b"otpgw:0"));
    }

    #[test]
    fn one_redis_keeps_the_names_a_cluster_tags_them() {
        let mut c = RedisConfig::new("redis://x", "P", "n1");
        assert_eq!(c.stream(0), "P:msgs");
        assert_eq!(c.status(77), "P:st:77");
        assert_eq!(c.kv("k"), "P:kv:k");
        assert_eq!(c.inbox("n2"), "P:inbox:n2");
        c.partitions = 16;
        assert_eq!(c.parts(), 1, "partitions only on a cluster");
        c.cluster = Some(super::super::link::Cluster {
            nodes: vec!["127.0.0.1:7000".into()],
            password: None,
        });
        assert_eq!(c.parts(), 16);
        assert_eq!(c.stream(3), "{P:3}:msgs");
        assert_eq!(c.status(35), "{P:3}:st:35");
        assert_eq!(c.receipts(3), "{P:3}:receipts:n1");
        let k = "brand\u{1f}key";
        let p = c.part_of_key(k);
        assert_eq!(c.kv(k), format!("{{P:{p}}}:kv:{k}"));
        let spread: std::collections::HashSet<u16> = (0..200)
            .map(|i| c.part_of_key(&format!("key{i}")))
            .collect();
        assert_eq!(spread.len(), 16, "keys spread over every partition");
        assert_eq!(c.bound("b"), "{P:0}:bound:b");
    }
}
