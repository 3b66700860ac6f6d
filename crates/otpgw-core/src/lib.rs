//! The shared model of otpgw, below every crate that moves messages.
//!
//! - [`attempts`]: the attempts of an OTP under a receipt deadline (sans-IO);
//! - [`assure`]: the OTPs under a receipt deadline, brand policies, and the hooks
//!   that resend through another carrier and record carrier quality;
//! - [`content`]: where a message goes and what it carries, per channel;
//! - [`message`]: a message as accepted from a brand ([`Message`], [`MsgId`], [`Class`]);
//! - [`public_id`]: the ids brands see, a keyed permutation of message ids;
//! - [`store`]: what every backend implements, split by concern: [`MessageLog`],
//!   [`KeyValue`], [`Cluster`] (together: [`Store`]);
//! - [`tracker`]: messages between acceptance and their final state, and what
//!   happens when they reach it;
//! - [`outbox`]: per-brand queues of receipts waiting for a receiver session;
//! - [`clock`]: the wall clock, read only by drivers and passed down as `now`;
//! - [`handover`]: receipts handed between nodes on a shared store;
//! - [`country`]: the country calling code of a number (a metric label);
//! - [`shared_limit`]: a carrier rate limit several nodes hold together;
//! - [`status`]: where a message stands, for the HTTP door's status queries;
//! - [`wire`]: the binary encoding of stored records.

pub mod assure;
pub mod attempts;
pub mod clock;
pub mod content;
pub mod country;
pub mod handover;
pub mod message;
pub mod number;
pub mod outbox;
pub mod public_id;
pub mod shared_limit;
pub mod status;
pub mod store;
pub mod tracker;
pub mod wire;

pub use content::{Body, Channel, Destination, SmsBody};
pub use message::{Class, Message, MsgId};
pub use otpgw_proto::receipt::DeliveryState;
pub use store::{Cluster, KeyValue, MessageLog, Store, StoreError, WindowCount};
