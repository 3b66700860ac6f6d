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

use std::collections::HashMap;
use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

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
    /// The SMPP session that submitted the message, while this process runs (0:
    /// none or unknown, as after a restart): see [`BrandOutbox::register`].
    pub origin: u64,
    /// It was written to a brand session at least once (recorded in the store
    /// before the write): after a crash it may reach the brand a second time.
    pub sent: bool,
    /// The message was one destination of a `submit_multi`: the receipt carries
    /// this id (the submission's) instead of the message's own.
    pub group: Option<MsgId>,
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

/// One brand's queue: receipts any of its receiver sessions may take, and per
/// bound session those that must go to it (see [`BrandOutbox::register`]).
#[derive(Debug)]
pub struct BrandOutbox {
    q: Mutex<Queues>,
    notify: Notify,
    capacity: usize,
    /// Receipts in `shared` and in every session's own queue: changed under the
    /// lock, read without it (every submit asks [`BrandOutbox::is_full`]).
    waiting: AtomicUsize,
}

#[derive(Debug, Default)]
struct Queues {
    /// For any receiver session of the brand.
    shared: VecDeque<ReceiptJob>,
    /// Bound sessions of the brand, by session id.
    sessions: HashMap<u64, Bound>,
    /// Sessions in `sessions` that take receipts.
    receivers: usize,
}

#[derive(Debug)]
struct Bound {
    /// The client's address: a transmitter's receipts go to a receiver bound from
    /// the same address (the same client's pair of binds).
    ip: IpAddr,
    /// Whether it takes receipts (receiver, transceiver).
    takes: bool,
    /// Receipts of the messages it submitted (or its transmitter pair did).
    own: VecDeque<ReceiptJob>,
}

impl Queues {
    /// The session a receipt goes to: the one that submitted its message when it
    /// takes receipts; for a transmitter, a receiver bound from the same address;
    /// else none (any receiver, `None`).
    fn target(&self, origin: u64) -> Option<u64> {
        let b = self.sessions.get(&origin)?;
        if b.takes {
            return Some(origin);
        }
        self.sessions
            .iter()
            .filter(|(_, s)| s.takes && s.ip == b.ip)
            .map(|(id, _)| *id)
            .min()
    }

    fn queue(&mut self, origin: u64) -> &mut VecDeque<ReceiptJob> {
        match self.target(origin) {
            Some(sid) => match self.sessions.get_mut(&sid) {
                Some(b) => &mut b.own,
                None => &mut self.shared,
            },
            None => &mut self.shared,
        }
    }
}

impl BrandOutbox {
    fn new(capacity: usize) -> Self {
        Self {
            q: Mutex::new(Queues::default()),
            notify: Notify::new(),
            capacity,
            waiting: AtomicUsize::new(0),
        }
    }

    /// Queue a receipt where it goes (see [`BrandOutbox::register`]). When full,
    /// with no receiver bound, the oldest leaves memory (counted); with one bound,
    /// nothing does (see the module docs).
    pub fn push(&self, job: ReceiptJob) {
        {
            let mut q = self.q.lock();
            if self.len() >= self.capacity && q.receivers == 0 && q.shared.pop_front().is_some() {
                metrics::counter!("otpgw_receipts_dropped_total").increment(1);
            } else {
                self.waiting.fetch_add(1, Ordering::Relaxed);
            }
            let origin = job.origin;
            q.queue(origin).push_back(job);
        }
        self.wake();
    }

    /// Wake every session waiting in [`BrandOutbox::take_for`]: a receipt may be
    /// for one session only, so waking one at random could miss it (each waiter
    /// registers before it looks, so none misses a wake-up).
    fn wake(&self) {
        self.notify.notify_waiters();
    }

    /// Whether `capacity` receipts or more wait: the brand's submits are throttled.
    pub fn is_full(&self) -> bool {
        self.len() >= self.capacity
    }

    /// A session of the brand bound, with id `sid` (never 0) from `ip`; `takes`:
    /// whether it takes receipts. Receipts of the messages it submits then go to it
    /// (or, for a transmitter, to a receiver bound from the same address) while it
    /// is bound, and to any receiver of the brand otherwise.
    pub fn register(&self, sid: u64, ip: IpAddr, takes: bool) {
        let mut q = self.q.lock();
        let own = VecDeque::new();
        if q.sessions.insert(sid, Bound { ip, takes, own }).is_none() && takes {
            q.receivers += 1;
        }
    }

    /// The session `sid` ended: what waited for it goes to any receiver, first.
    pub fn unregister(&self, sid: u64) {
        {
            let mut q = self.q.lock();
            let Some(b) = q.sessions.remove(&sid) else {
                return;
            };
            if b.takes {
                q.receivers -= 1;
            }
            for j in b.own.into_iter().rev() {
                q.shared.push_front(j);
            }
        }
        self.wake();
    }

    /// Put receipts that could not be delivered back at the front of where they go,
    /// in order.
    pub fn push_front(&self, jobs: impl IntoIterator<Item = ReceiptJob>) {
        let jobs: Vec<_> = jobs.into_iter().collect();
        if jobs.is_empty() {
            return;
        }
        {
            let mut q = self.q.lock();
            self.waiting.fetch_add(jobs.len(), Ordering::Relaxed);
            for j in jobs.into_iter().rev() {
                let origin = j.origin;
                q.queue(origin).push_front(j);
            }
        }
        self.wake();
    }

    /// Take up to `max` receipts for session `sid` (0: any session's) without
    /// waiting: its own first, then those for any receiver.
    pub fn try_take_for(&self, sid: u64, max: usize, out: &mut Vec<ReceiptJob>) {
        let mut q = self.q.lock();
        let before = out.len();
        if let Some(b) = q.sessions.get_mut(&sid) {
            let n = max.min(b.own.len());
            out.extend(b.own.drain(..n));
        }
        let n = (max - (out.len() - before)).min(q.shared.len());
        out.extend(q.shared.drain(..n));
        self.waiting
            .fetch_sub(out.len() - before, Ordering::Relaxed);
    }

    /// Take up to `max` receipts for any session without waiting.
    pub fn try_take(&self, max: usize, out: &mut Vec<ReceiptJob>) {
        self.try_take_for(0, max, out);
    }

    /// Wait until at least one receipt is there for session `sid` (0: any) and take
    /// up to `max`. Cancel-safe: nothing is removed unless the future completes.
    pub async fn take_for(&self, sid: u64, max: usize, out: &mut Vec<ReceiptJob>) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            self.try_take_for(sid, max, out);
            if !out.is_empty() {
                return;
            }
            notified.await;
        }
    }

    /// [`BrandOutbox::take_for`] any session.
    pub async fn take(&self, max: usize, out: &mut Vec<ReceiptJob>) {
        self.take_for(0, max, out).await;
    }

    /// Take out every waiting receipt `drop` picks (an erasure), wherever it waits.
    pub fn remove_where(&self, drop: impl Fn(&ReceiptJob) -> bool) -> Vec<ReceiptJob> {
        let mut out = Vec::new();
        let mut q = self.q.lock();
        let Queues {
            shared, sessions, ..
        } = &mut *q;
        for queue in std::iter::once(shared).chain(sessions.values_mut().map(|b| &mut b.own)) {
            let (gone, kept): (Vec<_>, Vec<_>) = queue.drain(..).partition(|j| drop(j));
            queue.extend(kept);
            out.extend(gone);
        }
        self.waiting.fetch_sub(out.len(), Ordering::Relaxed);
        out
    }

    /// Receipts waiting.
    pub fn len(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
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
            origin: 0,
            sent: false,
            group: None,
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
        b.register(1, IpAddr::from([127, 0, 0, 1]), true);
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
        b.unregister(1);
        b.unregister(1);
        for n in 9..=11 {
            b.push(job(n));
        }
        assert_eq!(b.len(), 2);
    }

    #[test]
    fn erased_receipts_leave_every_queue() {
        let b = Outbox::new(100).brand(&Arc::from("x"));
        b.register(1, IpAddr::from([127, 0, 0, 1]), true);
        for n in 1..=6 {
            b.push(with_origin(n, n % 2));
        }
        let gone = b.remove_where(|j| j.id.0 % 3 == 0);
        assert_eq!(ids(&gone), vec![6, 3]);
        assert_eq!(b.len(), 4);
        let mut out = vec![];
        b.try_take_for(1, 10, &mut out);
        assert_eq!(ids(&out), vec![1, 5, 2, 4]);
    }

    fn with_origin(n: u64, origin: u64) -> ReceiptJob {
        ReceiptJob { origin, ..job(n) }
    }

    fn ids(out: &[ReceiptJob]) -> Vec<u64> {
        out.iter().map(|j| j.id.0).collect()
    }

    /// Receipts go to the session that submitted (a transceiver: itself; a
    /// transmitter: the receiver bound from the same address), else to any; what
    /// waited for a session that ends goes to any, first.
    #[test]
    fn receipts_go_back_to_the_submitting_session() {
        let o = Outbox::new(100);
        let b = o.brand(&Arc::from("x"));
        let (here, there) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        b.register(1, here, true); // transceiver A
        b.register(2, there, true); // transceiver B
        b.register(3, there, false); // transmitter C, paired with B
        b.push(with_origin(10, 1));
        b.push(with_origin(11, 2));
        b.push(with_origin(12, 3));
        b.push(with_origin(13, 0)); // after a restart: anyone's
        b.push(with_origin(14, 99)); // its session is gone: anyone's
        let mut out = vec![];
        b.try_take_for(1, 10, &mut out);
        assert_eq!(ids(&out), vec![10, 13, 14]);
        out.clear();
        b.try_take_for(2, 10, &mut out);
        assert_eq!(ids(&out), vec![11, 12]);
        assert!(b.is_empty());
        // Put back (a full window): to the same session, in order.
        b.push_front(out.drain(..));
        b.try_take_for(1, 10, &mut out);
        assert!(out.is_empty(), "A never gets B's receipts");
        // B ends: its receipts (and C's) go to anyone, first in line.
        b.push(with_origin(15, 0));
        b.unregister(2);
        b.push(with_origin(16, 3)); // C has no receiver pair now
        b.try_take_for(1, 10, &mut out);
        assert_eq!(ids(&out), vec![11, 12, 15, 16]);
        assert_eq!(b.len(), 0);
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
