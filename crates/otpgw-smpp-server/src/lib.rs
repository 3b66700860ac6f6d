//! otpgw's SMPP door for brands: listeners (plain TCP and TLS), sessions (binds,
//! `submit_sm` handed to the accept layer, receipts out as `deliver_sm`). What a
//! message must pass to be accepted is the accept layer's (`otpgw-accept`), shared
//! with every other door.
//!
//! - [`config`]: listener and session settings;
//! - [`context`]: what every session shares;
//! - [`session`]: one brand connection;
//! - [`server`]: the listeners;
//! - [`proxy_protocol`]: the client's address from a trusted load balancer.

pub mod config;
pub mod context;
pub mod proxy_protocol;
pub mod server;
pub mod session;

pub use config::ServerConfig;
pub use context::Context;
pub use server::Server;
