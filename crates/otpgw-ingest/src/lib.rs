//! The brand-facing SMPP server of otpgw.
//!
//! - [`brands`]: the brands allowed to bind, their credentials and defaults;
//! - [`errors`]: why a `submit_sm` is refused, mapped to SMPP status codes in one place;
//! - [`validate`]: checks on a `submit_sm` before it is accepted;
//! - [`acceptor`]: validate, route, store, queue, and hand back otpgw's message id;
//! - [`session`]: one brand connection: binds, submits, receipts out as `deliver_sm`;
//! - [`server`]: the listener.

pub mod acceptor;
pub mod auth;
pub mod brands;
pub mod errors;
pub mod limits;
pub mod server;
pub mod session;
pub mod tls;
pub mod validate;

pub use acceptor::{Accepted, Acceptor, Submission};
pub use brands::{BrandConfig, Brands};
pub use errors::AcceptError;
pub use server::{Server, ServerConfig};
