//! Messages between acceptance and their final state.
//!
//! The tracker holds every accepted, unfinished message. Finishing one (a final
//! receipt from the carrier, a permanent refusal, expiry) removes it exactly once,
//! tells the store, and queues the brand's receipt if the brand asked for one. A
//! second final receipt for the same message finds nothing and is counted, so a
//! brand never gets two receipts for one message.
//!
//! A long message sent as several parts finishes when every part was DELIVERED, or
//! at the first part that ended otherwise (that state is the message's); see
//! [`Tracker::expect_parts`].

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use dashmap::DashMap;

use otpgw_proto::receipt::DeliveryState;

use crate::message::{Message, MsgId};
use crate::outbox::{Outbox, ReceiptJob};
use crate::status::MessageStatus;
use crate::store::{Store, Ticket};

/// See the module docs.
pub struct Tracker {
    inflight: DashMap<MsgId, Arc<Message>>,
    /// Long messages: parts not yet reported DELIVERED.
    parts: DashMap<MsgId, u32>,
    /// Entries in `parts`, so the common case (no long message pending) costs one
    /// atomic load per receipt instead of a map lookup.
    parts_pending: AtomicUsize,
    outbox: Arc<Outbox>,
    store: Arc<dyn Store>,
    /// `otpgw_messages_finished_total{state}` by message_state value, registered on
    /// first use.
    finished_counters: [std::sync::OnceLock<metrics::Counter>; 10],
}

impl std::fmt::Debug for Tracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracker")
            .field("inflight", &self.inflight.len())
            .field("store", &self.store.name())
            .finish()
    }
}

/// Whether finishing did anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// The message was finished now; `receipt` says whether a receipt was queued.
    Done {
        receipt: bool,
        /// When the message was accepted (for latency metrics).
        accepted_ms: u64,
    },
    /// It was already finished (or never known): nothing happened.
    Unknown,
}

impl Tracker {
    /// A tracker over a store and the brands' outboxes.
    pub fn new(store: Arc<dyn Store>, outbox: Arc<Outbox>) -> Self {
        Self {
            inflight: DashMap::with_capacity(1 << 16),
            parts: DashMap::new(),
            parts_pending: AtomicUsize::new(0),
            outbox,
            store,
            finished_counters: Default::default(),
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The outboxes.
    pub fn outbox(&self) -> &Arc<Outbox> {
        &self.outbox
    }

    /// Start tracking an accepted message.
    pub fn insert(&self, msg: Arc<Message>) {
        self.inflight.insert(msg.id, msg);
    }

    /// A tracked message.
    pub fn get(&self, id: MsgId) -> Option<Arc<Message>> {
        self.inflight.get(&id).map(|m| m.clone())
    }

    /// `id` went out as `n` parts: a DELIVERED receipt finishes it only once all `n`
    /// reported DELIVERED (held in memory: after a restart, the first receipt decides).
    pub fn expect_parts(&self, id: MsgId, n: u32) {
        if n > 1 && self.parts.insert(id, n).is_none() {
            self.parts_pending.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A part of `id` was DELIVERED: whether the message is now complete (always true
    /// for a message sent whole).
    pub fn part_delivered(&self, id: MsgId) -> bool {
        if self.parts_pending.load(Ordering::Relaxed) == 0 {
            return true;
        }
        let done = match self.parts.get_mut(&id) {
            None => return true,
            Some(mut left) => {
                *left = left.saturating_sub(1);
                *left == 0
            }
        };
        if done {
            self.forget_parts(id);
        }
        done
    }

    fn forget_parts(&self, id: MsgId) {
        if self.parts_pending.load(Ordering::Relaxed) != 0 && self.parts.remove(&id).is_some() {
            self.parts_pending.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Messages not yet finished.
    pub fn len(&self) -> usize {
        self.inflight.len()
    }

    /// Whether nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.inflight.is_empty()
    }

    /// Finish a message in `state`, once. `err` is the carrier's error code, if any.
    /// The ticket resolves when the store has made the final state (and the brand's
    /// receipt) durable.
    pub fn finish(
        &self,
        id: MsgId,
        state: DeliveryState,
        err: Option<&str>,
        now_ms: u64,
    ) -> (Finish, Ticket) {
        let Some((_, msg)) = self.inflight.remove(&id) else {
            metrics::counter!("otpgw_receipts_duplicate_total").increment(1);
            return (Finish::Unknown, Ticket::ready());
        };
        self.forget_parts(id);
        self.finished_counters[usize::from(state.tlv()).min(9)]
            .get_or_init(
                || metrics::counter!("otpgw_messages_finished_total", "state" => state.label()),
            )
            .increment(1);
        if msg.extra.is_some() {
            self.store
                .record_status(&MessageStatus::finished(&msg, state, err, now_ms));
        }
        if !msg.wants_receipt(state) {
            let t = self.store.finished(id, state, None, now_ms);
            return (
                Finish::Done {
                    receipt: false,
                    accepted_ms: msg.accepted_ms,
                },
                t,
            );
        }
        let job = ReceiptJob {
            id,
            brand: msg.brand.clone(),
            source: msg.fields.dest.clone(),
            dest: msg.fields.source.clone(),
            state,
            err: err.unwrap_or("000").to_string(),
            submit_ms: msg.accepted_ms,
            done_ms: now_ms,
            attempts: 0,
            url: msg.extra.as_ref().and_then(|e| e.receipt_url.clone()),
        };
        let t = self.store.finished(id, state, Some(&job), now_ms);
        self.outbox.deliver(job);
        (
            Finish::Done {
                receipt: true,
                accepted_ms: msg.accepted_ms,
            },
            t,
        )
    }

    /// Queue a receipt recovered from the store for its brand (webhook or SMPP).
    pub fn restore_receipt(&self, job: ReceiptJob) {
        self.outbox.deliver(job);
    }
}
