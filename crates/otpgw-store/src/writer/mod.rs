//! The one writer every durable backend (embedded, log, Redis) uses: the queue the
//! store calls put their writes in ([`WriteQueue`], encoding every record through
//! the store's [`crate::codec::Codec`]), the writes themselves ([`Op`]), how a
//! writer gathers them into batches ([`next_batch`] on a thread, [`next_batch_async`]
//! in a task), the backlog of writes a failed batch must still make ([`Backlog`]),
//! and how a written batch answers its waiters ([`answer`]). A backend supplies only
//! how one batch is written (a redb transaction, one `write` and `fdatasync`, a
//! Redis pipeline).
//!
//! **When full.** One channel per store, with these bounds:
//! - accepts (and accepts with an idempotency key) wait for their batch; at most
//!   `max_pending_accepts` wait at once, and one more is refused at once with
//!   [`otpgw_core::StoreError::Busy`] (a brand gets ESME_RTHROTTLED, HTTP 503 with
//!   `Retry-After`): back-pressure the brand sees at once, never a stall;
//! - every other write belongs to a message already accepted (sent, confirmed,
//!   attempts, finished, forwarded, status, an owed job) or to a request that waits
//!   for it (compare-and-set, flush, a published receipt): a few per message in
//!   flight, and messages in flight are bounded by the carrier queues' capacity and
//!   the windows, so these are always taken: refusing one would forget a promise;
//! - what a failed batch must still write waits in the [`Backlog`], at most
//!   [`Backlog::MAX`]; beyond it the oldest go, counted in
//!   `otpgw_store_writes_dropped_total`.

mod backlog;
mod batch;
mod op;
mod queue;
mod stats;
#[cfg(test)]
mod tests;

pub(crate) use backlog::Backlog;
pub(crate) use batch::{Answer, answer, log_failed, next_batch};
pub(crate) use op::Op;
pub(crate) use queue::{WriteQueue, Writes};
pub use stats::WriterStats;
pub(crate) use stats::WriterThread;
