//! Verifications: otpgw owns the whole life of a one-time code.
//!
//! - [`code`]: codes and ids from the OS's CSPRNG; the keyed hash (HMAC-SHA256 with
//!   the deployment's secret) that is all the store keeps of a code;
//! - [`record`]: a verification as stored;
//! - [`machine`]: the rules (checks, approval once, lock after too many wrong codes,
//!   expiry, resends), free of IO and clock;
//! - [`transaction`]: a code bound to an amount, currency and payee (PSD2 dynamic
//!   linking);
//! - [`guard`]: the conversion guard against SMS pumping (prefixes whose codes
//!   nobody types are blocked), free of IO and clock;
//! - [`service`]: the [`Verifier`]: create, check, resend and look up over the
//!   gateway's store, sending codes through the one acceptor.

pub mod code;
pub mod guard;
pub mod machine;
pub mod record;
pub mod service;
pub mod transaction;

pub use code::Secret;
pub use machine::{Outcome, Rules};
pub use service::{CreateRequest, Signals, Verifier, VerifyConfig, VerifyError, View};
pub use transaction::Transaction;
