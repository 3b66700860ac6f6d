//! otpgw's test support, in one place (a dev-dependency only, never shipped):
//!
//! - [`sample`]: the sample message every test builds on;
//! - [`contract`]: what every store backend must do, run by each backend's tests;
//! - [`crash`]: the crash-child harness (SIGKILL under load, then check);
//! - [`disk`]: full-disk tests on a small tmpfs;
//! - [`free_port`] and [`ServeProcess`]: `otpgw serve` as a child process, the
//!   harness the fault campaign (`otpgw soak`) uses too (from `otpgw-sim`).
//!
//! The in-process gateway under test is `otpgw_node::Gateway::start` on a
//! configuration: the gateway's integration tests build it in their `common`
//! module (one `start` helper).

pub mod contract;
pub mod crash;
pub mod disk;
pub mod sample;

pub use otpgw_sim::process::{ServeProcess, free_port};
