//! The accept layer every door shares (the SMPP server, the HTTP API,
//! verifications): the brands and their credentials, authentication and lockouts,
//! the brands' limits, validation, idempotency, composing a message from text, and
//! the mapping of each refusal to what each door answers.
//!
//! - [`brands`]: the brands allowed to send, their credentials and defaults;
//! - [`auth`]: password and key hashes (argon2id), sans-IO lockout of failing
//!   accounts and addresses;
//! - [`limits`]: sans-IO per-brand rate, sender ids, destination prefixes, messages
//!   per destination number;
//! - [`validate`]: checks on a message before it is accepted;
//! - [`compose`]: a message from text (encoding, addresses, long texts);
//! - [`acceptor`]: validate, limit, route, store, track, queue, hand back the id;
//! - [`multi`]: `submit_multi`, one message per number under one id;
//! - [`replace`]: a queued message replaced in place (`replace_sm`, `replace_if_present_flag`);
//! - [`errors`]: why a message is refused, as an SMPP status and as an HTTP answer;
//! - [`tls`]: the rustls server configuration of a door's TLS listener.

pub mod acceptor;
pub mod auth;
pub mod brands;
pub mod compose;
pub mod errors;
pub mod fraud;
pub mod limits;
pub mod multi;
pub use otpgw_core::number;
pub mod replace;
pub mod tls;
pub mod validate;

pub use acceptor::{Accepted, Acceptor, Submission};
pub use brands::{BrandConfig, Brands};
pub use errors::{AcceptError, HttpRefusal};
