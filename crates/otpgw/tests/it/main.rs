//! The gateway's integration tests, one test binary (one link instead of one per
//! file): each module is one concern over real sockets on 127.0.0.1. `common` holds
//! the shared helpers. Run one module with a filter, e.g.
//! `cargo nextest run -p otpgw --test it crash_restart::`.

// A scenario over real sockets reads best as one function, however long.
#![allow(clippy::too_many_lines)]

mod common;

mod admin_audit;
mod at_rest;
mod brand_auth;
mod brand_limits;
mod brand_protocol;
mod brand_tls;
mod carrier_faults;
mod carrier_tls;
mod crash_restart;
mod delivery_assurance;
mod dispatch_bench;
mod dispatch_policy;
mod end_to_end;
mod erasure;
mod fraud_guard;
mod hostile_input;
mod http_api;
mod http_doors;
mod interop;
mod interop_ops;
mod log_secrecy;
mod long_messages;
mod openapi_conformance;
mod ops;
mod prometheus;
mod redis_backend;
mod redis_cluster;
mod redis_scale_out;
mod redis_sentinel;
mod reload;
mod session_defences;
