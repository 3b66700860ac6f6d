//! Tallies ([`otpgw_core::store::Cluster::tally_add`]): `P:tally:KEY`, a hash of
//! named numbers the nodes add to (`HINCRBY`) and set (`HSET` / `HDEL`), expiring
//! `ttl` after its last change; one pipelined round trip per call.

use otpgw_core::store::StoreError;

use super::{Redis, err};

impl Redis {
    fn tally_key(&self, key: &str) -> String {
        format!("{}:tally:{key}", self.cfg.prefix)
    }

    pub(super) async fn tally_add(
        &self,
        key: &str,
        adds: &[(String, i64)],
        ttl_ms: u64,
    ) -> Result<(), StoreError> {
        let k = self.tally_key(key);
        let mut pipe = redis::pipe();
        for (field, by) in adds {
            pipe.cmd("HINCRBY").arg(&k).arg(field).arg(*by).ignore();
        }
        pipe.cmd("PEXPIRE").arg(&k).arg(ttl_ms.max(1)).ignore();
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn).await.map_err(err)
    }

    pub(super) async fn tally_set(
        &self,
        key: &str,
        fields: &[(String, Option<i64>)],
        ttl_ms: u64,
    ) -> Result<(), StoreError> {
        let k = self.tally_key(key);
        let mut pipe = redis::pipe();
        for (field, v) in fields {
            match v {
                Some(v) => pipe.cmd("HSET").arg(&k).arg(field).arg(*v).ignore(),
                None => pipe.cmd("HDEL").arg(&k).arg(field).ignore(),
            };
        }
        pipe.cmd("PEXPIRE").arg(&k).arg(ttl_ms.max(1)).ignore();
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn).await.map_err(err)
    }

    pub(super) async fn tally_get(&self, key: &str) -> Result<Vec<(String, i64)>, StoreError> {
        let mut conn = self.conn.clone();
        redis::cmd("HGETALL")
            .arg(self.tally_key(key))
            .query_async(&mut conn)
            .await
            .map_err(err)
    }
}
