//! `[store.encryption]`: the keys that seal what the durable stores keep (see
//! [`otpgw_store::seal`]). Each key is 64 hexadecimal characters (32 bytes), given
//! as `key`, `key_env` or `key_file` like every other secret; `active` names the
//! key new writes are sealed with; the others stay readable until a rekey has
//! sealed everything again with the active one.

use std::path::PathBuf;

use serde::Deserialize;

use otpgw_store::Keyring;

/// `[store.encryption]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Encryption {
    /// The id of the key new writes are sealed with.
    pub active: String,
    /// Every key that records may be sealed with.
    #[serde(default)]
    pub keys: Vec<EncryptionKey>,
}

/// One `[[store.encryption.keys]]`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptionKey {
    pub id: String,
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub key_env: Option<String>,
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

impl std::fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptionKey")
            .field("id", &self.id)
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .field("key_env", &self.key_env)
            .field("key_file", &self.key_file)
            .finish()
    }
}

impl Encryption {
    /// The keyring, or the first problem (a field path first, as check-config
    /// prints it).
    pub fn keyring(&self) -> Result<Keyring, String> {
        let mut keys = Vec::with_capacity(self.keys.len());
        for (i, k) in self.keys.iter().enumerate() {
            let at = format!("store.encryption.keys[{i}]");
            let hex = super::secret::source("key", &k.key, &k.key_env, &k.key_file)
                .resolve()
                .map_err(|e| format!("{at}.{e}"))?
                .ok_or_else(|| format!("{at}: set one of key, key_env and key_file"))?;
            let bytes =
                otpgw_store::seal::key_from_hex(&hex).map_err(|e| format!("{at}.key: {e}"))?;
            keys.push((k.id.clone(), bytes));
        }
        Keyring::new(&self.active, &keys).map_err(|e| format!("store.encryption: {e}"))
    }
}
