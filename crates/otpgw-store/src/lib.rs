//! Store backends behind [`otpgw_core::Store`].
//!
//! - [`embedded::EmbeddedStore`]: a redb file with group commit; an acknowledged
//!   message survives a crash. The default.
//! - [`log::LogStore`]: an append-only segmented log with its index in memory: one
//!   record per change, one write and one fdatasync per group commit;
//! - [`memory::MemoryStore`]: keeps nothing across a restart; chosen explicitly, and
//!   logged loudly as not durable by the binary.
//! - [`redis_store::RedisStore`]: Redis Streams with a consumer group, for several
//!   nodes on one Redis (durable with `appendfsync always`).
//! - [`redis_limit::RedisRateLimit`]: carrier rate limits shared by the nodes.
//! - [`record`]: the binary records the embedded and Redis stores write.

pub mod counters;
pub mod embedded;
#[doc(hidden)]
pub mod fixtures;
pub mod log;
pub mod memory;
pub mod record;
pub mod redis_limit;
pub mod redis_store;
#[cfg(test)]
mod test_disk;
mod writes;

pub use embedded::{EmbeddedConfig, EmbeddedStore};
pub use log::{LogConfig, LogStore};
pub use memory::MemoryStore;
pub use redis_limit::RedisRateLimit;
pub use redis_store::{RedisConfig, RedisStore};
