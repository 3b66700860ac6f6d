//! Test and demo peers for otpgw, speaking real SMPP over TCP.
//!
//! - [`smsc`]: a simulated carrier SMSC. It accepts binds, answers `submit_sm` with its
//!   own ids (hex or decimal), sends receipts after a delay with a configurable mix of
//!   outcomes, can cap its rate (ESME_RTHROTTLED above it), send a receipt before its
//!   `submit_sm_resp`, hold receipts while no receiver is bound, drop every connection
//!   on demand, lose, delay or fail the receipts of a share of messages per prefix, and records every message it received so tests can check for loss
//!   and duplicates.
//! - [`loadgen`]: a brand load generator: binds, submits at a rate or as fast as the
//!   window allows, matches receipts, and reports throughput and latency.
//! - [`fuzz`]: a live-server fuzzer: bound sessions streaming mutated PDUs, each
//!   batch checked to end answered or closed, never hung;
//! - [`httpload`]: a load generator for the HTTP API (messages or verifications
//!   over keep-alive connections);
//! - [`proxy`]: a loopback TCP proxy that adds latency, stalls or resets
//!   connections (fault campaigns);
//! - [`redis_server`]: a durable `redis-server` process for tests;
//! - [`redis_ha`]: a primary, replicas and three Sentinels, for failover tests;
//! - [`process`]: `otpgw serve` as a child process (tests and the fault campaign),
//!   and the one free-port helper;
//! - [`tmpfs`]: a small tmpfs for full-disk faults.

pub mod fuzz;
pub mod httpload;
pub mod loadgen;
pub mod process;
pub mod proxy;
pub mod receipts;
pub mod redis_cluster;
pub mod redis_ha;
pub mod redis_server;
pub mod smsc;
pub mod tmpfs;

pub use loadgen::{LoadConfig, LoadReport};
pub use smsc::{IdStyle, Outcomes, Rule, RuleAction, SimConfig, SimHandle};
