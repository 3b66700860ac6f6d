//! Opening the store the configuration names, with what comes with it: the first
//! message id (with Redis the node's number in its top byte, so nodes sharing a
//! Redis never hand out the same id) and, with Redis, the carrier limits the nodes
//! share.

use std::sync::Arc;
use std::time::Duration;

use otpgw_core::shared_limit::{BindSlots, SharedLimit};
use otpgw_core::{Store, clock};
use otpgw_store::{EmbeddedStore, LogStore, MemoryStore, RedisRateLimit, RedisStore};

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
    /// Carrier rate limits held with the other nodes (`share_carrier_limits`).
    pub shared_limit: Option<Arc<dyn SharedLimit>>,
    /// Carrier bind allowances held with the other nodes.
    pub bind_slots: Option<Arc<dyn BindSlots>>,
}

/// Open the configured store.
pub(crate) async fn open(cfg: &Config) -> Result<Opened, StartError> {
    let path = cfg.store.path.display().to_string();
    let mut opened = Opened {
        store: Arc::new(MemoryStore::new()),
        memory: None,
        embedded: None,
        id_start: clock::now_us(),
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
            let e = EmbeddedStore::open(cfg.embedded_config())
                .map_err(|e| StartError::store(format!("cannot open the store {path}"), e))?;
            tracing::info!(%path, "embedded store open");
            let e = Arc::new(e);
            opened.embedded = Some(e.clone());
            opened.store = e;
        }
        Backend::Log => {
            let l = LogStore::open(cfg.log_config())
                .map_err(|e| StartError::store(format!("cannot open the log store {path}"), e))?;
            tracing::info!(%path, "log store open");
            opened.store = Arc::new(l);
        }
        Backend::Redis => {
            let s = &cfg.store;
            let r = RedisStore::open(cfg.redis_config()).await.map_err(|e| {
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
            let l = RedisRateLimit::connect(
                &s.redis_url,
                &s.redis_prefix,
                Duration::from_secs(2),
                &s.node_id,
                Duration::from_millis(s.node_lease_ms),
            )
            .await
            .map_err(|e| {
                StartError::store("cannot connect the shared carrier limits to redis", e)
            })?;
            let l = Arc::new(l);
            if s.share_carrier_limits {
                opened.shared_limit = Some(l.clone());
            }
            opened.bind_slots = Some(l);
            opened.store = Arc::new(r);
        }
    }
    Ok(opened)
}
