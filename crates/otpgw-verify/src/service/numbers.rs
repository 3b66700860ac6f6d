//! A number's index (the verifications made for it, newest first, under the
//! keyed hash of the number: the store never sees the number in a key) and the
//! erasure of everything kept for a number.

use super::*;

/// Most verification ids a number's index lists (the newest first).
pub(super) const INDEX_IDS: usize = 32;

/// The ids a number's index lists, newest first.
pub(super) fn index_ids(value: &[u8]) -> Vec<String> {
    std::str::from_utf8(value)
        .unwrap_or("")
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// A number's index listing `newest` then `older` (at most [`INDEX_IDS`]).
pub(super) fn index_value(newest: &str, older: &[String]) -> Vec<u8> {
    let mut ids = vec![newest];
    ids.extend(older.iter().map(String::as_str).filter(|o| *o != newest));
    ids.truncate(INDEX_IDS);
    ids.join(",").into_bytes()
}

/// The key of a number's live verification: the number only as its keyed hash.
pub(super) fn number_key(secret: &Secret, brand: &str, digits: &str) -> String {
    format!("vnum:{brand}:{}", secret.blind(digits))
}

impl Verifier {
    /// Erase every verification kept for `digits` (a number in international
    /// form, no `+`), of every brand: each record listed in the number's index,
    /// and the index, are overwritten empty and expire at once. Returns how many
    /// verifications were erased.
    pub async fn erase(&self, digits: &str, now: u64) -> Result<u64, VerifyError> {
        let brands = self.acceptor.brands().read().ids();
        let store = self.store();
        let mut erased = 0;
        for brand in brands {
            let nk = number_key(&self.cfg.secret, &brand, digits);
            let Some(index) = store.kv_get(&nk).await.map_err(|_| VerifyError::Store)? else {
                continue;
            };
            for id in index_ids(&index.value) {
                if let Some(rec) = store
                    .kv_get(&key(&id))
                    .await
                    .map_err(|_| VerifyError::Store)?
                {
                    store
                        .kv_put(&key(&id), rec.version, Vec::new(), now)
                        .await
                        .map_err(|_| VerifyError::Store)?;
                    erased += 1;
                }
            }
            store
                .kv_put(&nk, index.version, Vec::new(), now)
                .await
                .map_err(|_| VerifyError::Store)?;
        }
        Ok(erased)
    }
}

#[cfg(test)]
mod index_tests {
    use super::*;

    #[test]
    fn newest_first_no_repeats_bounded() {
        let older: Vec<String> = (0..40).map(|i| format!("id{i}")).collect();
        let v = index_value("id5", &older);
        let ids = index_ids(&v);
        assert_eq!(ids.len(), INDEX_IDS);
        assert_eq!(&ids[..3], ["id5", "id0", "id1"]);
        assert_eq!(ids.iter().filter(|i| *i == "id5").count(), 1);
        assert!(index_ids(b"").is_empty());
        let s = Secret::new(vec![1u8; 32]).unwrap();
        let k = number_key(&s, "bank", "447400900123");
        assert!(
            !k.contains("447400900123") && k.starts_with("vnum:bank:"),
            "{k}"
        );
    }
}
