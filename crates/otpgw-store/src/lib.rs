//! Store backends behind the core's store traits ([`otpgw_core::store`]).
//!
//! - [`embedded::EmbeddedStore`]: a redb file with group commit; an acknowledged
//!   message survives a crash. The default.
//! - [`log::LogStore`]: an append-only segmented log with its index in memory: one
//!   record per change, one write and one fdatasync per group commit;
//! - [`redis_store::RedisStore`]: Redis Streams with a consumer group, for several
//!   nodes on one Redis (durable with `appendfsync always`);
//! - [`memory::MemoryStore`]: keeps nothing across a restart; chosen explicitly, and
//!   logged loudly as not durable by the node.
//!
//! What the durable backends share: [`durable::Durable`] (the store calls, once),
//! the one writer (`writer`: the write queue with its policy when full, batches, the
//! backlog of a failed batch), and [`codec::Codec`], through which every record and
//! every key-value value passes on its way to disk or Redis and back (the binary
//! layouts are `record`'s). [`redis_limit::RedisRateLimit`]: carrier rate limits
//! and bind slots shared by the nodes; `counters`: event counts in windows for one
//! node.

pub mod codec;
mod counters;
pub mod durable;
pub mod embedded;
pub mod log;
pub mod memory;
mod record;
pub mod redis_limit;
pub mod redis_store;
pub mod seal;
mod writer;

pub use codec::Codec;
pub use durable::{Backend, Durable};
pub use embedded::{EmbeddedConfig, EmbeddedStore};
pub use log::{LogConfig, LogStore};
pub use memory::MemoryStore;
pub use redis_limit::RedisRateLimit;
pub use redis_store::{RedisConfig, RedisStore};
pub use seal::Keyring;
pub use writer::WriterStats;
