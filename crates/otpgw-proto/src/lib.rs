//! SMPP protocol layer of otpgw, on top of rusmpp 0.4.
//!
//! Everything rusmpp-specific lives here so the rest of the gateway sees a small,
//! stable surface:
//! - [`codec`]: a frame-isolating codec (length cap before allocation, exactly one
//!   frame cut per PDU, malformed frames as recoverable items);
//! - [`session`]: sans-IO session state (bind state, sequence numbers, window with
//!   per-request deadlines, enquire_link timers); it takes `now` and never reads a clock;
//! - [`receipt`]: the textual delivery receipt parser and formatter, and receipt
//!   extraction from `deliver_sm` (TLVs preferred);
//! - [`data_sm`]: `data_sm` read as the fields of a submission, and its response;
//! - [`pdu`]: builders and accessors for the PDUs the gateway uses, and a lenient
//!   `deliver_sm` reader for receipts that rusmpp refuses;
//! - [`query`]: `query_sm` and its response;
//! - [`split`]: long messages cut into concatenated parts with a UDH;
//! - [`gsm`]: Unicode text to the GSM default alphabet or UCS-2;
//! - [`driver`]: the async writer that owns the socket's write half and batches PDUs;
//! - [`status`]: SMPP command status and command id constants;
//! - [`clock`]: the wall clock, for drivers only.

pub mod clock;
pub mod codec;
pub mod data_sm;
pub mod driver;
pub mod gsm;
pub mod pdu;
pub mod query;
pub mod receipt;
pub mod replace;
pub mod session;
pub mod split;
pub mod status;
pub mod submit_multi;
pub mod time;

pub use rusmpp;
