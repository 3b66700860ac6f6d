//! Rekeying the embedded store (`otpgw rekey`, with the gateway stopped): every
//! table holding records is written again in one transaction, each record sealed
//! with the active key (those sealed with it already are kept as they are), then
//! the file is compacted like a scrub, so no page of the file holds a record under
//! an older key, or in clear from before encryption was turned on. A record that
//! cannot be opened (its key is not configured, or it is damaged) stops the rekey
//! before anything is written.

use redb::{Database, ReadableTable, TableDefinition};

use otpgw_core::store::StoreError;

use super::{CARRIER_STATE, KV, MESSAGES, RECEIPTS, STATUS, decode_kv, encode_kv, err};
use crate::codec::Codec;
use crate::seal::Unreadable;

/// What a rekey did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Rekeyed {
    /// Records written again with the active key.
    pub resealed: u64,
    /// Records that were sealed with it already.
    pub current: u64,
}

fn refused(what: &str, e: &Unreadable) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

type Reseal<'c> = dyn Fn(u64, &[u8]) -> Result<Option<Vec<u8>>, Unreadable> + 'c;

/// One table keyed by message id, written again.
fn by_id(
    w: &redb::WriteTransaction,
    t: TableDefinition<u64, &[u8]>,
    what: &str,
    reseal: &Reseal<'_>,
    done: &mut Rekeyed,
) -> Result<(), StoreError> {
    let all: Vec<(u64, Vec<u8>)> = {
        let table = w.open_table(t).map_err(err)?;
        let mut out = Vec::new();
        for r in table.iter().map_err(err)? {
            let (k, v) = r.map_err(err)?;
            let id = k.value();
            let kept = v.value();
            match reseal(id, kept).map_err(|e| refused(&format!("{what} {id}"), &e))? {
                Some(new) => {
                    done.resealed += 1;
                    out.push((id, new));
                }
                None => {
                    done.current += 1;
                    out.push((id, kept.to_vec()));
                }
            }
        }
        out
    };
    w.delete_table(t).map_err(err)?;
    let mut table = w.open_table(t).map_err(err)?;
    for (id, v) in &all {
        table.insert(*id, v.as_slice()).map_err(err)?;
    }
    Ok(())
}

/// Rekey the store file at `path` with `codec` (see the module docs).
pub fn rekey(path: &std::path::Path, codec: &Codec) -> Result<Rekeyed, StoreError> {
    if codec.active_key().is_none() {
        return Err(StoreError::Corrupt(
            "no [store.encryption]: nothing to seal with".into(),
        ));
    }
    let mut db = Database::open(path).map_err(err)?;
    let mut done = Rekeyed::default();
    let w = db.begin_write().map_err(err)?;
    by_id(
        &w,
        MESSAGES,
        "message",
        &|_, k| codec.reseal_message(k),
        &mut done,
    )?;
    by_id(
        &w,
        CARRIER_STATE,
        "carrier state",
        &|id, k| codec.reseal_state(id, k),
        &mut done,
    )?;
    by_id(
        &w,
        RECEIPTS,
        "receipt",
        &|_, k| codec.reseal_receipt(k),
        &mut done,
    )?;
    by_id(
        &w,
        STATUS,
        "status",
        &|_, k| codec.reseal_status(k),
        &mut done,
    )?;
    let kv: Vec<(String, Vec<u8>)> = {
        let table = w.open_table(KV).map_err(err)?;
        let mut out = Vec::new();
        for r in table.iter().map_err(err)? {
            let (k, v) = r.map_err(err)?;
            let key = k.value().to_string();
            let Some((version, expires, kept)) = decode_kv(v.value()) else {
                return Err(StoreError::Corrupt(format!("record {key:?}: damaged")));
            };
            let value = match codec
                .reseal_value(&key, kept)
                .map_err(|e| refused(&format!("record {key:?}"), &e))?
            {
                Some(new) => {
                    done.resealed += 1;
                    new
                }
                None => {
                    done.current += 1;
                    kept.to_vec()
                }
            };
            out.push((key, encode_kv(version, expires, &value)));
        }
        out
    };
    w.delete_table(KV).map_err(err)?;
    {
        let mut table = w.open_table(KV).map_err(err)?;
        for (k, v) in &kv {
            table.insert(k.as_str(), v.as_slice()).map_err(err)?;
        }
    }
    w.commit().map_err(err)?;
    // The pages of the old records become free, then compaction moves what is
    // live into them and cuts the file (see the writer's scrub).
    for _ in 0..2 {
        db.begin_write().map_err(err)?.commit().map_err(err)?;
    }
    while db.compact().map_err(err)? {}
    Ok(done)
}
