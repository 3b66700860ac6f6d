//! Opening the store the configuration names, with what comes with it: the first
//! message id (with Redis the node's number in its top byte, so nodes sharing a
//! Redis never hand out the same id) and, with Redis, the carrier limits the nodes
//! share; the key of the ids brands see ([`otpgw_core::public_id`]), made once and
//! kept in the store.

use std::sync::Arc;
use std::time::Duration;

use otpgw_core::shared_limit::{BindSlots, SharedLimit};
use otpgw_core::{Store, clock};
use otpgw_store::{Codec, EmbeddedStore, LogStore, MemoryStore, RedisRateLimit, RedisStore};

use crate::StartError;
use crate::config::{Backend, Config};

/// An open store and what came with it.
pub(crate) struct Opened {
    pub store: Arc<dyn Store>,
    /// The memory store, for the counts tests read.
    pub memory: Option<Arc<MemoryStore>>,
    /// The embedded store, closed at shutdown.
    pub embedded: Option<Arc<EmbeddedStore>>,
    /// The first message id this run hands out.
    pub id_start: u64,
    /// The key of the ids brands see.
    pub id_key: [u8; 16],
    /// Carrier rate limits held with the other nodes (`share_carrier_limits`).
    pub shared_limit: Option<Arc<dyn SharedLimit>>,
    /// Carrier bind allowances held with the other nodes.
    pub bind_slots: Option<Arc<dyn BindSlots>>,
}

/// The record codec `[store.encryption]` asks for (plain without it).
fn codec(cfg: &Config) -> Result<Arc<Codec>, StartError> {
    let Some(e) = &cfg.store.encryption else {
        return Ok(Arc::new(Codec::plain()));
    };
    let ring = e
        .keyring()
        .map_err(|e| StartError::store("cannot load the encryption keys", e))?;
    tracing::info!(
        active = ring.active(),
        "records are sealed at rest (AES-256-GCM)"
    );
    Ok(Arc::new(Codec::sealing(ring)))
}

/// Open the configured store.
pub(crate) async fn open(cfg: &Config) -> Result<Opened, StartError> {
    let path = cfg.store.path.display().to_string();
    let codec = codec(cfg)?;
    let mut opened = Opened {
        store: Arc::new(MemoryStore::new()),
        memory: None,
        embedded: None,
        id_start: clock::now_us(),
        id_key: [0; 16],
        shared_limit: None,
        bind_slots: None,
    };
    match cfg.store.backend {
        Backend::Memory => {
            tracing::warn!(
                "store backend is MEMORY: accepted messages and pending receipts are LOST on a crash or restart"
            );
            let m = Arc::new(MemoryStore::new());
            opened.memory = Some(m.clone());
            opened.store = m;
        }
        Backend::Embedded => {
            let e = EmbeddedStore::open(otpgw_store::EmbeddedConfig {
                codec: codec.clone(),
                ..cfg.embedded_config()
            })
            .map_err(|e| StartError::store(format!("cannot open the store {path}"), e))?;
            tracing::info!(%path, "embedded store open");
            let e = Arc::new(e);
            opened.embedded = Some(e.clone());
            opened.store = e;
        }
        Backend::Log => {
            let l = LogStore::open(otpgw_store::LogConfig {
                codec: codec.clone(),
                ..cfg.log_config()
            })
            .map_err(|e| StartError::store(format!("cannot open the log store {path}"), e))?;
            tracing::info!(%path, "log store open");
            opened.store = Arc::new(l);
        }
        Backend::Redis => {
            let s = &cfg.store;
            let rc = cfg.redis_config();
            let r = RedisStore::open(otpgw_store::RedisConfig {
                codec: codec.clone(),
                ..rc.clone()
            })
            .await
            .map_err(|e| {
                StartError::store(
                    format!(
                        "cannot open the redis store (node {}, prefix {})",
                        s.node_id, s.redis_prefix
                    ),
                    e,
                )
            })?;
            tracing::info!(node = %s.node_id, number = r.node_number(), prefix = %s.redis_prefix, "redis store open");
            opened.id_start = otpgw_store::redis_store::id_start(r.node_number(), opened.id_start);
            let l = RedisRateLimit::on(
                r.link(),
                &s.redis_prefix,
                &s.node_id,
                Duration::from_millis(s.node_lease_ms),
            );
            let l = Arc::new(l);
            if s.share_carrier_limits {
                opened.shared_limit = Some(l.clone());
            }
            opened.bind_slots = Some(l);
            opened.store = Arc::new(r);
        }
    }
    opened.id_key = id_key(&*opened.store).await?;
    Ok(opened)
}

/// Where the key of public ids is kept, and for how long (a century: every
/// store takes an expiry as a count of milliseconds).
const ID_KEY: &str = "otpgw:public-id-key";
const KEEP_MS: u64 = 100 * 365 * 86_400_000;

/// The key of the ids brands see: the store's, or a new one kept in it (the first
/// node to write it wins; the others read it).
async fn id_key(store: &dyn Store) -> Result<[u8; 16], StartError> {
    let failed =
        |e: &dyn std::fmt::Display| StartError::store("cannot read or keep the public id key", e);
    for _ in 0..3 {
        if let Some(v) = store.kv_get(ID_KEY).await.map_err(|e| failed(&e))? {
            return <[u8; 16]>::try_from(v.value.as_slice())
                .map_err(|_| failed(&"the stored key is not 16 bytes"));
        }
        let mut key = [0u8; 16];
        getrandom::fill(&mut key).map_err(|e| failed(&e))?;
        if store
            .kv_put(ID_KEY, 0, key.to_vec(), clock::now_ms() + KEEP_MS)
            .await
            .map_err(|e| failed(&e))?
            .is_some()
        {
            return Ok(key);
        }
    }
    Err(failed(&"another node keeps replacing it"))
}

/// `otpgw rekey`: seal every record of the configured store again with the active
/// key of `[store.encryption]` (the gateway stopped: the embedded file and the log
/// directory are opened here, and Redis refuses while a node of the prefix is
/// alive). Recorded in the audit log when one is configured. Returns what was done,
/// for the operator.
pub async fn rekey(cfg: &Config) -> Result<String, StartError> {
    let codec = codec(cfg)?;
    let Some(active) = codec.active_key().map(str::to_string) else {
        return Err(StartError::store(
            "rekey",
            "no [store.encryption] in the configuration: nothing to seal with",
        ));
    };
    let path = cfg.store.path.display().to_string();
    let done = match cfg.store.backend {
        Backend::Memory => {
            return Err(StartError::store("rekey", "the memory store keeps nothing"));
        }
        Backend::Embedded => {
            let r = otpgw_store::embedded::rekey(&cfg.store.path, &codec)
                .map_err(|e| StartError::store(format!("cannot rekey {path}"), e))?;
            format!(
                "{} records resealed, {} already under {active}",
                r.resealed, r.current
            )
        }
        Backend::Log => {
            let l = LogStore::open(otpgw_store::LogConfig {
                codec: codec.clone(),
                ..cfg.log_config()
            })
            .map_err(|e| StartError::store(format!("cannot open the log store {path}"), e))?;
            let r = l.rekey(Duration::from_secs(600)).await;
            l.close();
            let n = r.map_err(|e| StartError::store(format!("cannot rekey {path}"), e))?;
            format!("{n} segments written again under {active}")
        }
        Backend::Redis => {
            let rc = otpgw_store::RedisConfig {
                codec: codec.clone(),
                ..cfg.redis_config()
            };
            let r = otpgw_store::redis_store::rekey(&rc)
                .await
                .map_err(|e| StartError::store("cannot rekey the redis store", e))?;
            format!(
                "{} records resealed, {} already under {active}",
                r.resealed, r.current
            )
        }
    };
    if let Some(log) = crate::gateway::open_audit(cfg)? {
        let actor = format!(
            "cli {}",
            std::env::var("USER").unwrap_or_else(|_| "?".into())
        );
        log.record(crate::audit::Event {
            actor: &actor,
            action: "rekey",
            target: &active,
            result: "ok",
        })
        .map_err(|e| StartError::Part {
            what: "the audit log",
            reason: e.to_string(),
        })?;
    }
    Ok(done)
}
