//! Per-brand queues of receipts waiting for a receiver or transceiver session, and
//! per-brand queues of receipts owed as webhooks (messages from the HTTP door that
//! gave a `receipt_url`).
//!
//! A receipt is pushed when its message reaches a final state. Any bound receiver of
//! the brand takes it, sends it as `deliver_sm`, and either drops it on
//! `deliver_sm_resp` ESME_ROK or puts it back at the front when the brand refused it,
//! timed out, or the session ended. With no session bound, receipts wait here.
//!
//! Bounded, without dropping a receipt for back-pressure: while a brand has a
//! receiver bound, a full outbox (`capacity` receipts) keeps taking the receipts of
//! messages already accepted and the SMPP door answers the brand's new submits
//! ESME_RTHROTTLED until it drains below `capacity` ([`BrandOutbox::is_full`]), so
//! it holds at most `capacity` plus the brand's messages in flight. A brand with no
//! receiver bound is not slow but away: when its outbox is full the oldest receipt
//! leaves memory, counted in `otpgw_receipts_dropped_total` (a durable store keeps
//! it until `receipt_retention`, and it is delivered after a restart).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use dashmap::DashMap;
use parking_lot::Mutex;
use tokio::sync::Notify;

use otpgw_proto::pdu::Address;
use otpgw_proto::receipt::DeliveryState;

use crate::message::MsgId;

/// A receipt owed to a brand.
#[derive(Debug, Clone)]
pub struct ReceiptJob {
    pub id: MsgId,
    /// The brand the receipt is for.
    pub brand: Arc<str>,
    /// The original destination (the receipt's source).
    pub source: Address,
    /// The original source (the receipt's destination).
    pub dest: Address,
    pub state: DeliveryState,
    /// Error code reported by the carrier, or a gateway code ("000" when none).
    pub err: String,
    pub submit_ms: u64,
    pub done_ms: u64,
    /// Times a brand session refused or did not answer it (webhooks: failed posts).
    pub attempts: u8,
    /// Where it goes as a webhook (`None`: to an SMPP receiver session).
    pub url: Option<Arc<str>>,
    /// The message's deadline (fallback events tell the time left; 0 otherwise).
    pub deadline_ms: u64,
}

/// Set in a [`ReceiptJob`]'s id when it is an OTP's fallback event rather than its
/// receipt (message ids never use this bit: 56 bits of microseconds last until the
/// year 3111 before reaching it).
pub const FALLBACK_BIT: u64 = 1 << 55;

impl ReceiptJob {
    /// Whether this is a fallback event (see [`FALLBACK_BIT`]).
    pub fn is_fallback(&self) -> bool {
        self.id.0 & FALLBACK_BIT != 0
    }
    /// The message it is about.
    pub fn message_id(&self) -> MsgId {
        MsgId(self.id.0 & !FALLBACK_BIT)
    }
}

/// One brand's queue.
#[derive(Debug)]
pub struct BrandOutbox {
    q: Mutex<VecDeque<ReceiptJob>>,
    notify: Notify,
    capacity: usize,
    /// Receiver and transceiver sessions of the brand bound now.
    receivers: std::sync::atomic::AtomicUsize,
}

impl BrandOutbox {
    fn new(capacity: usize) -> Self {
        Self {
            q: Mutex::new(VecDeque::new()),
            notify: Notify::new(),
            capacity,
            receivers: Default::default(),
        }
    }

    /// Queue a receipt. When full, with no receiver bound, the oldest leaves memory
    /// (counted); with one bound, nothing does (see the module docs).
    pub fn push(&self, job: ReceiptJob) {
        {
            let mut q = self.q.lock();
            if q.len() >= self.capacity && self.receivers.load(Ordering::Relaxed) == 0 {
                q.pop_front();
                metrics::counter!("otpgw_receipts_dropped_total").increment(1);
            }
            q.push_back(job);
        }
        self.notify.notify_one();
    }

    /// Whether `capacity` receipts or more wait: the brand's submits are throttled.
    pub fn is_full(&self) -> bool {
        self.len() >= self.capacity
    }

    /// A receiver or transceiver session of the brand bound (`true`) or ended.
    pub fn receiver(&self, bound: bool) {
        if bound {
            self.receivers.fetch_add(1, Ordering::Relaxed);
        } else {
            let _ = self
                .receivers
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        }
    }

    /// Put receipts that could not be delivered back at the front, in order.
    pub fn push_front(&self, jobs: impl IntoIterator<Item = ReceiptJob>) {
        let mut n = 0;
        {
            let mut q = self.q.lock();
            let jobs: Vec<_> = jobs.into_iter().collect();
            for j in jobs.into_iter().rev() {
                q.push_front(j);
                n += 1;
            }
        }
        if n > 0 {
            self.notify.notify_waiters();
            self.notify.notify_one();
        }
    }

    /// Take up to `max` receipts without waiting.
    pub fn try_take(&self, max: usize, out: &mut Vec<ReceiptJob>) {
        let mut q = self.q.lock();
        let n = max.min(q.len());
        out.extend(q.drain(..n));
    }

    /// Wait until at least one receipt is queued and take up to `max`. Cancel-safe:
    /// nothing is removed unless the future completes.
    pub async fn take(&self, max: usize, out: &mut Vec<ReceiptJob>) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            self.try_take(max, out);
            if !out.is_empty() {
                return;
            }
            notified.await;
        }
    }

    /// Receipts waiting.
    pub fn len(&self) -> usize {
        self.q.lock().len()
    }

    /// Whether none are waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// All brands' outboxes.
#[derive(Debug)]
pub struct Outbox {
    brands: DashMap<Arc<str>, Arc<BrandOutbox>>,
    /// Webhook receipts, per brand.
    hooks: DashMap<Arc<str>, Arc<BrandOutbox>>,
    /// Wakes the webhook sender when a brand's webhook queue is created.
    hook_added: Notify,
    capacity: usize,
}

impl Outbox {
    /// Outboxes holding at most `capacity` receipts per brand (and as many webhooks).
    pub fn new(capacity: usize) -> Self {
        Self {
            brands: DashMap::new(),
            hooks: DashMap::new(),
            hook_added: Notify::new(),
            capacity,
        }
    }

    /// Queue a receipt where it goes: the brand's webhook queue when it has a URL,
    /// else its SMPP outbox.
    pub fn deliver(&self, job: ReceiptJob) {
        let brand = job.brand.clone();
        if job.url.is_some() {
            self.hooks(&brand).push(job);
        } else {
            self.brand(&brand).push(job);
        }
    }

    /// The webhook queue of a brand, created on first use.
    pub fn hooks(&self, brand: &Arc<str>) -> Arc<BrandOutbox> {
        if let Some(b) = self.hooks.get(brand) {
            return b.clone();
        }
        let (q, new) = match self.hooks.entry(brand.clone()) {
            dashmap::mapref::entry::Entry::Occupied(e) => (e.get().clone(), false),
            dashmap::mapref::entry::Entry::Vacant(v) => (
                v.insert(Arc::new(BrandOutbox::new(self.capacity))).clone(),
                true,
            ),
        };
        if new {
            self.hook_added.notify_waiters();
        }
        q
    }

    /// Every brand's webhook queue.
    pub fn all_hooks(&self) -> Vec<(Arc<str>, Arc<BrandOutbox>)> {
        self.hooks
            .iter()
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect()
    }

    /// Wait until a brand's webhook queue is created (register interest first with
    /// the returned future's `enable`, then look at [`Outbox::all_hooks`]).
    pub fn hook_added(&self) -> tokio::sync::futures::Notified<'_> {
        self.hook_added.notified()
    }

    /// The outbox of a brand, created on first use.
    pub fn brand(&self, brand: &Arc<str>) -> Arc<BrandOutbox> {
        if let Some(b) = self.brands.get(brand) {
            return b.clone();
        }
        self.brands
            .entry(brand.clone())
            .or_insert_with(|| Arc::new(BrandOutbox::new(self.capacity)))
            .clone()
    }

    /// Every brand's outbox.
    pub fn all(&self) -> Vec<(Arc<str>, Arc<BrandOutbox>)> {
        self.brands
            .iter()
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect()
    }

    /// Receipts waiting across all brands (SMPP and webhooks).
    pub fn total(&self) -> usize {
        self.brands.iter().map(|b| b.len()).sum::<usize>()
            + self.hooks.iter().map(|b| b.len()).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(n: u64) -> ReceiptJob {
        ReceiptJob {
            id: MsgId(n),
            brand: "x".into(),
            source: Address::default(),
            dest: Address::default(),
            state: DeliveryState::Delivered,
            err: "000".into(),
            submit_ms: 0,
            done_ms: 0,
            attempts: 0,
            url: None,
            deadline_ms: 0,
        }
    }

    #[test]
    fn bounded_drops_oldest_only_while_no_receiver_is_bound() {
        let o = Outbox::new(2);
        let b = o.brand(&Arc::from("x"));
        b.push(job(1));
        b.push(job(2));
        b.push(job(3));
        let mut out = vec![];
        b.try_take(10, &mut out);
        assert_eq!(out.iter().map(|j| j.id.0).collect::<Vec<_>>(), vec![2, 3]);
        // A bound receiver that is slow: nothing is dropped, the outbox says it
        // is full (the brand's submits are throttled) until it drains.
        b.receiver(true);
        for n in 4..=8 {
            b.push(job(n));
        }
        assert!(b.is_full());
        out.clear();
        b.try_take(3, &mut out);
        assert!(b.is_full());
        b.try_take(10, &mut out);
        assert!(!b.is_full());
        assert_eq!(
            out.iter().map(|j| j.id.0).collect::<Vec<_>>(),
            vec![4, 5, 6, 7, 8]
        );
        // Gone again: back to dropping the oldest when full.
        b.receiver(false);
        b.receiver(false);
        for n in 9..=11 {
            b.push(job(n));
        }
        assert_eq!(b.len(), 2);
    }

    #[test]
    fn push_front_keeps_order() {
        let o = Outbox::new(10);
        let b = o.brand(&Arc::from("x"));
        b.push(job(3));
        b.push_front(vec![job(1), job(2)]);
        let mut out = vec![];
        b.try_take(10, &mut out);
        assert_eq!(
            out.iter().map(|j| j.id.0).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
    }

    #[tokio::test]
    async fn take_waits_for_a_push() {
        let o = Arc::new(Outbox::new(10));
        let b = o.brand(&Arc::from("x"));
        let b2 = b.clone();
        let h = tokio::spawn(async move {
            let mut out = vec![];
            b2.take(5, &mut out).await;
            out.len()
        });
        tokio::task::yield_now().await;
        b.push(job(1));
        assert_eq!(h.await.unwrap(), 1);
    }
}
