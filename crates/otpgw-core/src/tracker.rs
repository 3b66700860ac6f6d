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
//!
//! An OTP under a receipt deadline ([`crate::assure`]) goes through its attempts
//! first: [`Tracker::sending`], [`Tracker::confirmed`], [`Tracker::receipt`],
//! [`Tracker::refused`] and [`Tracker::tick`] decide whether it finishes now, is
//! sent again through another carrier, or waits; only a decision to finish reaches
//! [`Tracker::finish`].

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use otpgw_proto::receipt::DeliveryState;

use dashmap::DashMap;

use crate::assure::{Assure, Sample};
use crate::attempts::{Action, Attempt, Attempts};
use crate::message::{Message, MsgId};
use crate::outbox::{FALLBACK_BIT, Outbox, ReceiptJob};
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
    /// OTPs under a receipt deadline.
    assure: Assure,
    /// Entries in the assurance table (so unwatched messages skip the lookup).
    watched: AtomicUsize,
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
    /// An OTP under a receipt deadline goes on (sent again, or waiting for another
    /// attempt's receipt): not finished.
    Continues,
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
            assure: Assure::default(),
            watched: AtomicUsize::new(0),
        }
    }

    /// Delivery assurance: brand policies and hooks.
    pub fn assure(&self) -> &Assure {
        &self.assure
    }

    fn watching(&self) -> bool {
        self.watched.load(Ordering::Relaxed) != 0
    }

    fn unwatch(&self, id: MsgId) {
        if self.watching() && self.assure.table.remove(&id).is_some() {
            self.watched.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// A submit of `msg` is about to be written to `carrier`, whose receipt timeout
    /// is `timeout`. The ticket resolves when the send is recorded durably (the
    /// submit is written only then): the "sent" mark, or for an OTP under a
    /// receipt deadline its attempts.
    pub fn sending(
        &self,
        msg: &Message,
        carrier: &Arc<str>,
        timeout: Option<u64>,
        now_ms: u64,
    ) -> Ticket {
        if self.watching()
            && let Some(mut a) = self.assure.table.get_mut(&msg.id)
        {
            a.sending(carrier, now_ms);
            return self.store.attempts(msg.id, &a.list);
        }
        match self.assure.watch(msg, timeout) {
            Some((t, max)) => {
                let mut a = Attempts::new(max, t, msg.deadline_ms);
                a.sending(carrier, now_ms);
                let ticket = self.store.attempts(msg.id, &a.list);
                if self.assure.table.insert(msg.id, a).is_none() {
                    self.watched.fetch_add(1, Ordering::Relaxed);
                }
                ticket
            }
            None => self.store.submitted(msg.id),
        }
    }

    /// `carrier` confirmed `msg` with its id.
    pub fn confirmed(&self, msg: &Message, carrier: &Arc<str>, carrier_id: &str, now_ms: u64) {
        msg.note_confirmed(carrier, now_ms);
        if self.watching()
            && let Some(mut a) = self.assure.table.get_mut(&msg.id)
        {
            a.confirmed(carrier, carrier_id, now_ms);
            let due = a.next_due();
            let _ = self.store.attempts(msg.id, &a.list);
            drop(a);
            self.assure.schedule(msg.id, due);
            return;
        }
        self.store.carrier_accepted(msg.id, carrier, carrier_id);
    }

    /// A final receipt for `id` from `carrier`: the message finishes (the brand's
    /// receipt), or, under a receipt deadline, may be sent again or wait for
    /// another attempt. The ticket resolves when what it changed is durable.
    pub fn receipt(
        &self,
        id: MsgId,
        carrier: &str,
        state: DeliveryState,
        err: Option<&str>,
        now_ms: u64,
    ) -> (Finish, Ticket) {
        let Some(msg) = self.get(id) else {
            metrics::counter!("otpgw_receipts_late_total", "carrier" => carrier.to_string())
                .increment(1);
            return self.finish(id, state, err, now_ms);
        };
        let watched = if self.watching() {
            self.assure.table.get_mut(&id)
        } else {
            None
        };
        let Some(mut a) = watched else {
            let sample = match state {
                DeliveryState::Delivered => {
                    Sample::Delivered(now_ms.saturating_sub(msg.accepted_ms))
                }
                _ => Sample::Failed,
            };
            self.assure.sample(carrier, msg.to.key(), sample, now_ms);
            return self.finish(id, state, err, now_ms);
        };
        let sent = a
            .list
            .iter()
            .rev()
            .find(|t| &*t.carrier == carrier)
            .map_or(msg.accepted_ms, |t| t.sent_ms);
        let act = a.receipt(carrier, state, err, now_ms);
        drop(a);
        if act != Action::Late {
            let sample = match state {
                DeliveryState::Delivered => Sample::Delivered(now_ms.saturating_sub(sent)),
                _ => Sample::Failed,
            };
            self.assure.sample(carrier, msg.to.key(), sample, now_ms);
        }
        self.carry_out(&msg, carrier, act, now_ms)
    }

    /// `carrier` refused `msg` for good (a permanent error status `err`).
    pub fn refused(
        &self,
        msg: &Message,
        carrier: &str,
        err: &str,
        now_ms: u64,
    ) -> (Finish, Ticket) {
        let watched = if self.watching() {
            self.assure.table.get_mut(&msg.id)
        } else {
            None
        };
        let Some(mut a) = watched else {
            return self.finish(msg.id, DeliveryState::Undeliverable, Some(err), now_ms);
        };
        let act = a.refused(carrier, err, now_ms);
        drop(a);
        self.assure
            .sample(carrier, msg.to.key(), Sample::Failed, now_ms);
        match self.get(msg.id) {
            Some(m) => self.carry_out(&m, carrier, act, now_ms),
            None => (Finish::Unknown, Ticket::ready()),
        }
    }

    /// Time passed: attempts whose receipt is overdue time out; returns how many
    /// messages that moved (sent again or finished).
    pub fn tick(&self, now_ms: u64) -> usize {
        if !self.watching() {
            return 0;
        }
        let mut moved = 0;
        for id in self.assure.due_now(now_ms) {
            let Some(mut a) = self.assure.table.get_mut(&id) else {
                continue;
            };
            let late = Assure::timing_out(&a, now_ms);
            let act = a.tick(now_ms);
            let next = a.next_due();
            drop(a);
            self.assure.schedule(id, next);
            let Some(msg) = self.get(id) else {
                self.unwatch(id);
                continue;
            };
            for t in late {
                metrics::counter!("otpgw_receipt_timeouts_total", "carrier" => t.carrier.to_string())
                    .increment(1);
                self.assure
                    .sample(&t.carrier, msg.to.key(), Sample::TimedOut, now_ms);
            }
            if act != Action::Wait {
                moved += 1;
                let _ = self.carry_out(&msg, "", act, now_ms);
            }
        }
        moved
    }

    /// Take on an OTP recovered with its attempts (after a restart or a claim):
    /// `timeout` and `max` are its policy now. Decides at once what the attempts
    /// call for (an attempt sent but never confirmed is spent).
    pub fn restore_attempts(
        &self,
        msg: Arc<Message>,
        list: Vec<Attempt>,
        timeout: u64,
        max: u8,
        now_ms: u64,
    ) {
        let mut a = Attempts::restored(list, max, timeout, msg.deadline_ms);
        let act = a.resume(now_ms);
        tracing::debug!(id = %msg.id, attempts = a.list.len(), action = ?act, "restored attempts");
        let due = a.next_due();
        self.insert(msg.clone());
        if self.assure.table.insert(msg.id, a).is_none() {
            self.watched.fetch_add(1, Ordering::Relaxed);
        }
        self.assure.schedule(msg.id, due);
        let _ = self.carry_out(&msg, "", act, now_ms);
    }

    /// Carry out an assurance decision about `msg` (`carrier`: whose event it was).
    fn carry_out(
        &self,
        msg: &Arc<Message>,
        carrier: &str,
        act: Action,
        now_ms: u64,
    ) -> (Finish, Ticket) {
        match act {
            Action::Wait => {
                let t = match self.assure.table.get(&msg.id) {
                    Some(a) => self.store.attempts(msg.id, &a.list),
                    None => Ticket::ready(),
                };
                (Finish::Continues, t)
            }
            Action::Late => {
                metrics::counter!("otpgw_receipts_late_total", "carrier" => carrier.to_string())
                    .increment(1);
                (Finish::Continues, Ticket::ready())
            }
            Action::Resend { tried } => {
                let t = match self.assure.table.get(&msg.id) {
                    Some(a) => self.store.attempts(msg.id, &a.list),
                    None => Ticket::ready(),
                };
                let sent = self
                    .assure
                    .hooks()
                    .is_some_and(|h| h.resend(msg.clone(), &tried, now_ms));
                if sent {
                    // Counted only when it really went out again through another.
                    if let Some(last) = tried.last() {
                        metrics::counter!("otpgw_otp_fallbacks_total", "carrier" => last.to_string())
                            .increment(1);
                    }
                    return (Finish::Continues, t);
                }
                // No carrier of the route left to try: finish with what there is.
                let act = match self.assure.table.get_mut(&msg.id) {
                    Some(mut a) => a.give_up(now_ms),
                    None => return (Finish::Continues, t),
                };
                self.carry_out(msg, carrier, act, now_ms)
            }
            Action::Finish {
                state,
                err,
                fallback,
            } => {
                if let Some(a) = self.assure.table.get(&msg.id).map(|a| a.tried()) {
                    self.assure.retire(msg.id, &a, now_ms);
                }
                self.unwatch(msg.id);
                if fallback {
                    self.fallback_event(msg, state, err.as_deref(), now_ms);
                }
                self.finish(msg.id, state, err.as_deref(), now_ms)
            }
        }
    }

    /// Every attempt of `msg` failed with time left: tell the brand's fallback URL
    /// (durably, retried like a receipt), if it has one.
    fn fallback_event(&self, msg: &Message, state: DeliveryState, err: Option<&str>, now_ms: u64) {
        let Some(url) = self.assure.policy(&msg.brand).fallback_url else {
            return;
        };
        metrics::counter!("otpgw_fallback_events_total", "brand" => msg.brand.to_string())
            .increment(1);
        let job = ReceiptJob {
            id: MsgId(msg.id.0 | FALLBACK_BIT),
            brand: msg.brand.clone(),
            source: msg.to.phone().cloned().unwrap_or_default(),
            dest: msg.sender(),
            state,
            err: err.unwrap_or("TMO").to_string(),
            submit_ms: msg.accepted_ms,
            done_ms: now_ms,
            attempts: 0,
            url: Some(url),
            deadline_ms: msg.deadline_ms,
            origin: msg.origin,
            sent: false,
            group: None,
        };
        self.store.owe(&job);
        self.outbox.deliver(job);
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

    /// Messages not yet finished that `keep` accepts (a walk over all of them: for
    /// rare operations such as `cancel_sm` by address).
    pub fn matching(&self, keep: impl Fn(&Message) -> bool) -> Vec<Arc<Message>> {
        self.inflight
            .iter()
            .filter(|e| keep(e.value()))
            .map(|e| e.value().clone())
            .collect()
    }

    /// `id` went out as `n` parts: a DELIVERED receipt finishes it only once all `n`
    /// reported DELIVERED (held in memory: after a restart, the first receipt decides).
    pub fn expect_parts(&self, id: MsgId, n: u32) {
        if n > 1 && self.parts.insert(id, n).is_none() {
            self.parts_pending.fetch_add(1, Ordering::Relaxed);
        }
        // A long message is not watched for its receipt deadline (its parts each
        // have a receipt); it waits for them as any message does.
        if n > 1 {
            self.unwatch(id);
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
        self.end(id, state, err, now_ms, true)
    }

    /// Finish a message DELETED without a receipt to its brand (an erasure: no
    /// record about its number is left).
    pub fn finish_quietly(&self, id: MsgId, now_ms: u64) -> Ticket {
        self.end(id, DeliveryState::Deleted, None, now_ms, false).1
    }

    fn end(
        &self,
        id: MsgId,
        state: DeliveryState,
        err: Option<&str>,
        now_ms: u64,
        receipt: bool,
    ) -> (Finish, Ticket) {
        let Some((_, msg)) = self.inflight.remove(&id) else {
            metrics::counter!("otpgw_receipts_duplicate_total").increment(1);
            return (Finish::Unknown, Ticket::ready());
        };
        self.forget_parts(id);
        self.unwatch(id);
        self.finished_counters[usize::from(state.tlv()).min(9)]
            .get_or_init(
                || metrics::counter!("otpgw_messages_finished_total", "state" => state.label()),
            )
            .increment(1);
        // Every message's final state, whatever its door, for status queries
        // (HTTP `GET /v1/messages/{id}`, SMPP `query_sm`).
        self.store
            .record_status(&MessageStatus::finished(&msg, state, err, now_ms));
        if !(receipt && msg.wants_receipt(state)) {
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
            source: msg.to.phone().cloned().unwrap_or_default(),
            dest: msg.sender(),
            state,
            err: err.unwrap_or("000").to_string(),
            submit_ms: msg.accepted_ms,
            done_ms: now_ms,
            attempts: 0,
            url: msg.extra.as_ref().and_then(|e| e.receipt_url.clone()),
            deadline_ms: 0,
            origin: msg.origin,
            sent: false,
            group: msg.group,
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
