//! Delivery assurance: the OTPs under a receipt deadline, their attempts
//! ([`crate::attempts`]), when their receipts are due, each brand's policy, and
//! the hooks that carry out decisions the core cannot (resending through another
//! carrier's queue, recording carrier quality). The [`crate::tracker::Tracker`]
//! owns one and routes sends, confirmations, receipts and refusals of such
//! messages through it.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::{Arc, OnceLock};

use dashmap::DashMap;
use parking_lot::{Mutex, RwLock};

use crate::attempts::{Attempt, Attempts, Outcome};
use crate::message::{Message, MsgId};

/// A brand's assurance settings (`None`: the carrier's receipt timeout holds).
#[derive(Debug, Clone)]
pub struct Policy {
    /// Receipt timeout for the brand's OTPs, overriding the carrier's.
    pub receipt_timeout_ms: Option<u64>,
    /// Sends beyond the first (each through a carrier not tried yet).
    pub fallback_max: u8,
    /// Where the fallback event goes when every attempt failed in time.
    pub fallback_url: Option<Arc<str>>,
}

impl Default for Policy {
    /// The carrier's timeout, [`DEFAULT_FALLBACK_MAX`] fallbacks, no fallback URL.
    fn default() -> Self {
        Self {
            receipt_timeout_ms: None,
            fallback_max: DEFAULT_FALLBACK_MAX,
            fallback_url: None,
        }
    }
}

/// How an attempt ended, for carrier quality.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sample {
    /// A DELIVERED receipt this long after the send.
    Delivered(u64),
    /// A final receipt other than DELIVERED (or a permanent refusal).
    Failed,
    /// No final receipt by the due time.
    TimedOut,
}

/// What the layers above carry out for assurance.
pub trait Hooks: Send + Sync + 'static {
    /// Queue `msg` on an available carrier of its route not in `tried`; `false`
    /// when the route has none.
    fn resend(&self, msg: Arc<Message>, tried: &[Arc<str>], now_ms: u64) -> bool;
    /// An attempt of a message to `dest` through `carrier` ended (any message with
    /// a receipt, and timeouts of assured ones).
    fn sample(&self, carrier: &str, dest: &str, sample: Sample, now_ms: u64);
}

/// How long a retired attempt's carrier id stays matchable (its late receipt is
/// then still recognised as late, not unmatched).
pub const RETIRE_GRACE_MS: u64 = 600_000;
/// Retired attempts remembered per carrier at most (beyond, the oldest are due at
/// once).
pub const RETIRE_MAX: usize = 1_000_000;

/// Default fallbacks when a carrier sets a receipt timeout and the brand nothing.
pub const DEFAULT_FALLBACK_MAX: u8 = 1;

/// See the module docs.
#[derive(Default)]
pub struct Assure {
    policies: RwLock<HashMap<Arc<str>, Policy>>,
    pub(crate) table: DashMap<MsgId, Attempts>,
    due: Mutex<BinaryHeap<Reverse<(u64, MsgId)>>>,
    pub(crate) hooks: OnceLock<Arc<dyn Hooks>>,
    /// Per carrier: messages that finished after attempts through it, with when its
    /// record of their carrier ids may go (see [`Assure::take_retired`]).
    retired: DashMap<Arc<str>, VecDeque<(u64, MsgId)>>,
}

impl std::fmt::Debug for Assure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Assure")
            .field("watched", &self.table.len())
            .finish_non_exhaustive()
    }
}

impl Assure {
    /// Replace the brands' policies (at start and on reload).
    pub fn set_policies(&self, p: HashMap<Arc<str>, Policy>) {
        *self.policies.write() = p;
    }

    /// The brand's policy.
    pub fn policy(&self, brand: &str) -> Policy {
        self.policies.read().get(brand).cloned().unwrap_or_default()
    }

    /// Set the hooks (once, by the assembly).
    pub fn set_hooks(&self, h: Arc<dyn Hooks>) {
        let _ = self.hooks.set(h);
    }

    /// The receipt timeout and attempts for `msg` sent through a carrier with
    /// `carrier_timeout`: `None` when it is not watched (bulk, or no timeout set).
    pub fn watch(&self, msg: &Message, carrier_timeout: Option<u64>) -> Option<(u64, u8)> {
        if msg.class != crate::Class::Otp {
            return None;
        }
        let p = self.policy(&msg.brand);
        let t = p.receipt_timeout_ms.or(carrier_timeout)?;
        Some((t, 1 + p.fallback_max))
    }

    /// Messages watched.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether none is watched.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Remember when `id`'s next receipt is due.
    pub(crate) fn schedule(&self, id: MsgId, due: Option<u64>) {
        if let Some(d) = due {
            self.due.lock().push(Reverse((d, id)));
        }
    }

    /// Messages with a receipt due at or before `now` (each may be stale: the
    /// caller asks the machine).
    pub(crate) fn due_now(&self, now: u64) -> Vec<MsgId> {
        let mut h = self.due.lock();
        let mut out = Vec::new();
        while let Some(Reverse((d, id))) = h.peek().copied() {
            if d > now {
                break;
            }
            h.pop();
            out.push(id);
        }
        out
    }

    /// Attempts that were pending with a due time at or before `now` (they time out).
    pub(crate) fn timing_out(a: &Attempts, now: u64) -> Vec<Attempt> {
        a.list
            .iter()
            .filter(|t| t.outcome == Outcome::Pending && t.due_ms > 0 && now >= t.due_ms)
            .cloned()
            .collect()
    }

    /// Message `id` finished after attempts through `carriers`: a late receipt of
    /// theirs may still come (it is matched and counted); each carrier's record of
    /// its carrier id can go after [`RETIRE_GRACE_MS`].
    pub(crate) fn retire(&self, id: MsgId, carriers: &[Arc<str>], now_ms: u64) {
        for c in carriers {
            self.retired
                .entry(c.clone())
                .or_default()
                .push_back((now_ms + RETIRE_GRACE_MS, id));
        }
    }

    /// The messages whose carrier ids `carrier` may forget now (their grace period
    /// ended, or more than [`RETIRE_MAX`] wait), into `out`. The carrier's
    /// housekeeping asks once a second.
    pub fn take_retired(&self, carrier: &str, now_ms: u64, out: &mut Vec<MsgId>) {
        let Some(mut q) = self.retired.get_mut(carrier) else {
            return;
        };
        while let Some(&(due, id)) = q.front() {
            if due > now_ms && q.len() <= RETIRE_MAX {
                break;
            }
            q.pop_front();
            out.push(id);
        }
    }

    /// The hooks, if set.
    pub(crate) fn hooks(&self) -> Option<&Arc<dyn Hooks>> {
        self.hooks.get()
    }

    /// Record a quality sample, if anyone listens.
    pub(crate) fn sample(&self, carrier: &str, dest: &str, s: Sample, now: u64) {
        if let Some(h) = self.hooks.get() {
            h.sample(carrier, dest, s, now);
        }
    }
}
