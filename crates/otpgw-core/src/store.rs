//! The store trait: where otpgw keeps what it has promised.
//!
//! `accept` resolves only when the message is as safe as the backend can make it:
//! the ingest side sends `submit_sm_resp` ESME_ROK after it resolves, never before.
//! The later writes (carrier id, final state, receipt forwarded) are fire-and-forget
//! so a backend can batch them.

use std::future::Future;
use std::pin::Pin;

use otpgw_proto::receipt::DeliveryState;

use crate::message::{Message, MsgId};

/// A store operation's future.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Why the store refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend is unavailable for now: the brand gets a temporary error.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The backend is shutting down.
    #[error("store closed")]
    Closed,
}

/// A message store backend.
pub trait Store: Send + Sync + 'static {
    /// Record an accepted message; resolves when it is safe to acknowledge.
    fn accept<'a>(&'a self, msg: &'a Message) -> StoreFuture<'a, ()>;
    /// The carrier acknowledged the message with its own id.
    fn carrier_accepted(&self, id: MsgId, carrier: &str, carrier_msg_id: &str);
    /// The message reached its final state.
    fn finished(&self, id: MsgId, state: DeliveryState);
    /// The brand acknowledged the receipt for this message.
    fn receipt_forwarded(&self, id: MsgId);
    /// Whether an acknowledged message survives a crash.
    fn is_durable(&self) -> bool;
    /// Backend name for logs and metrics.
    fn name(&self) -> &'static str;
}
