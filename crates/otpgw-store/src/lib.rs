//! Store backends behind [`otpgw_core::Store`].
//!
//! - [`embedded::EmbeddedStore`]: a redb file with group commit; an acknowledged
//!   message survives a crash. The default.
//! - [`memory::MemoryStore`]: keeps nothing across a restart; chosen explicitly, and
//!   logged loudly as not durable by the binary.
//! - [`redis_store::RedisStore`]: Redis Streams with a consumer group, for several
//!   nodes on one Redis (durable with `appendfsync always`).
//! - [`redis_limit::RedisRateLimit`]: carrier rate limits shared by the nodes.
//! - [`record`]: the binary records the embedded and Redis stores write.

pub mod embedded;
#[doc(hidden)]
pub mod fixtures;
pub mod memory;
pub mod record;
pub mod redis_limit;
pub mod redis_store;

pub use embedded::{EmbeddedConfig, EmbeddedStore};
pub use memory::MemoryStore;
pub use redis_limit::RedisRateLimit;
pub use redis_store::{RedisConfig, RedisStore};

/// The accept path of the durable backends: refuse at once when `max` accepts
/// already wait (the brand gets a temporary error), else hand the write to the
/// backend's writer through `send` (false: the writer is gone) and resolve with the
/// writer's answer.
pub(crate) fn accept_through<'a>(
    pending: &std::sync::atomic::AtomicUsize,
    max: usize,
    send: impl FnOnce(tokio::sync::oneshot::Sender<bool>) -> bool,
    failed: &'static str,
) -> otpgw_core::store::StoreFuture<'a, ()> {
    use otpgw_core::store::StoreError;
    use std::sync::atomic::Ordering;
    if pending.load(Ordering::Relaxed) >= max {
        metrics::counter!("otpgw_store_busy_total").increment(1);
        return Box::pin(std::future::ready(Err(StoreError::Busy)));
    }
    let (done, rx) = tokio::sync::oneshot::channel();
    pending.fetch_add(1, Ordering::Relaxed);
    if !send(done) {
        pending.fetch_sub(1, Ordering::Relaxed);
        return Box::pin(std::future::ready(Err(StoreError::Closed)));
    }
    Box::pin(async move {
        match rx.await {
            Ok(true) => Ok(()),
            Ok(false) => Err(StoreError::Unavailable(failed.into())),
            Err(_) => Err(StoreError::Closed),
        }
    })
}
