//! Store backends behind [`otpgw_core::Store`].
//!
//! - [`memory::MemoryStore`]: keeps nothing across a restart; for demos and tests,
//!   chosen explicitly and logged as not durable by the binary.

pub mod memory;

pub use memory::MemoryStore;
