//! A running otpgw node, assembled from its [`Config`]: the store, dispatch, the
//! carrier binds, the doors (SMPP, HTTP, verifications), recovery of what the
//! previous run left, the receipt-deadline loop, sharing of work between nodes on
//! one Redis, and the operator's endpoints. The `otpgw` binary loads the
//! configuration, handles signals and calls [`Gateway::start`].
//!
//! - [`config`]: the TOML configuration, checked up front (`otpgw check-config`);
//! - [`gateway`]: assembly and shutdown; `reload`: SIGHUP;
//! - [`recovery`]: what the previous run (or a dead node) left, taken on once;
//! - `stores`: the configured store opened; `sharing`: dead nodes' work claimed;
//! - [`ops`]: `/metrics`, `/healthz`, `/readyz` and the admin API; `admin`: what
//!   they read and change.

mod admin;
pub mod audit;
pub mod config;
mod error;
pub mod gateway;
pub mod ops;
pub mod recovery;
mod reload;
pub mod series;
mod sharing;
mod stores;

pub use config::{Config, LogFormat};
pub use error::StartError;
pub use gateway::Gateway;
pub use recovery::RecoverySummary;
pub use reload::ReloadError;
pub use stores::rekey;
