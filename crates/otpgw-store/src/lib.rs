//! Store backends behind [`otpgw_core::Store`].
//!
//! - [`embedded::EmbeddedStore`]: a redb file with group commit; an acknowledged
//!   message survives a crash. The default.
//! - [`memory::MemoryStore`]: keeps nothing across a restart; chosen explicitly, and
//!   logged loudly as not durable by the binary.
//! - [`record`]: the binary records the embedded store writes.

pub mod embedded;
pub mod memory;
pub mod record;

pub use embedded::{EmbeddedConfig, EmbeddedStore};
pub use memory::MemoryStore;
