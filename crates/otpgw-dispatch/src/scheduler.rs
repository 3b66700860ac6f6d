//! Sans-IO scheduler: strict priority classes, earliest deadline first within a class,
//! and retries that wait for a not-before time.
//!
//! It never reads a clock: [`Scheduler::pop`] and [`Scheduler::expire`] take `now`
//! (milliseconds since the epoch). A message whose deadline is at or before `now` is
//! never returned by `pop`; it goes to the caller's `expired` list instead, so the
//! caller can finish it as EXPIRED. A message pushed with [`Scheduler::push_at`] (a
//! retry after a throttle or a temporary error) waits aside until its not-before time
//! and then rejoins its class in deadline order, so a retry keeps its priority.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::sync::Arc;

use otpgw_core::{Class, Message};

#[derive(Debug)]
struct Entry {
    /// Deadline for ready entries; not-before time for delayed ones.
    key: u64,
    seq: u64,
    msg: Arc<Message>,
}

impl PartialEq for Entry {
    fn eq(&self, o: &Self) -> bool {
        self.key == o.key && self.seq == o.seq
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Entry {
    /// Ordered by key, then arrival; the heaps hold `Reverse` so the earliest comes first.
    fn cmp(&self, o: &Self) -> Ordering {
        self.key.cmp(&o.key).then(self.seq.cmp(&o.seq))
    }
}

/// See the module docs.
#[derive(Debug)]
pub struct Scheduler {
    classes: [BinaryHeap<Reverse<Entry>>; 2],
    /// Retries waiting for their not-before time, earliest first.
    delayed: BinaryHeap<Reverse<Entry>>,
    delayed_per_class: [usize; 2],
    capacity: usize,
    seq: u64,
}

impl Scheduler {
    /// A scheduler that reports full at `capacity` messages.
    pub fn new(capacity: usize) -> Self {
        Self {
            classes: [BinaryHeap::new(), BinaryHeap::new()],
            delayed: BinaryHeap::new(),
            delayed_per_class: [0, 0],
            capacity,
            seq: 0,
        }
    }

    /// Messages queued (waiting retries included).
    pub fn len(&self) -> usize {
        self.classes.iter().map(BinaryHeap::len).sum::<usize>() + self.delayed.len()
    }
    /// Messages queued in one class (waiting retries included).
    pub fn len_class(&self, class: Class) -> usize {
        self.classes[class as usize].len() + self.delayed_per_class[class as usize]
    }
    /// Retries waiting for their not-before time.
    pub fn len_delayed(&self) -> usize {
        self.delayed.len()
    }
    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Whether the queue reached its capacity.
    pub fn is_full(&self) -> bool {
        self.len() >= self.capacity
    }

    fn entry(&mut self, key: u64, msg: Arc<Message>) -> Reverse<Entry> {
        self.seq += 1;
        Reverse(Entry {
            key,
            seq: self.seq,
            msg,
        })
    }

    /// Queue a message (the capacity is checked by the caller before acceptance).
    pub fn push(&mut self, msg: Arc<Message>) {
        let class = msg.class as usize;
        let e = self.entry(msg.deadline_ms, msg);
        self.classes[class].push(e);
    }

    /// Queue a message that must not be sent before `not_before` (a retry).
    pub fn push_at(&mut self, msg: Arc<Message>, not_before: u64) {
        self.delayed_per_class[msg.class as usize] += 1;
        let e = self.entry(not_before, msg);
        self.delayed.push(e);
    }

    /// When the earliest waiting retry becomes ready, if any waits.
    pub fn next_ready_at(&self) -> Option<u64> {
        self.delayed.peek().map(|e| e.0.key)
    }

    /// Move retries whose time came into their class.
    fn promote(&mut self, now: u64) {
        while self.delayed.peek().is_some_and(|e| e.0.key <= now) {
            if let Some(Reverse(e)) = self.delayed.pop() {
                self.delayed_per_class[e.msg.class as usize] -= 1;
                self.push(e.msg);
            }
        }
    }

    /// The next message to send at `now`: the highest class first, earliest deadline
    /// first within it. Messages found expired on the way go to `expired`.
    pub fn pop(&mut self, now: u64, expired: &mut Vec<Arc<Message>>) -> Option<Arc<Message>> {
        self.promote(now);
        for heap in &mut self.classes {
            while let Some(Reverse(top)) = heap.pop() {
                if top.key <= now {
                    expired.push(top.msg);
                } else {
                    return Some(top.msg);
                }
            }
        }
        None
    }

    /// Take everything, waiting retries included (failover to another carrier);
    /// expired messages go to `expired`.
    pub fn drain(
        &mut self,
        now: u64,
        out: &mut Vec<Arc<Message>>,
        expired: &mut Vec<Arc<Message>>,
    ) {
        self.promote(u64::MAX);
        for heap in &mut self.classes {
            for Reverse(e) in heap.drain() {
                if e.msg.deadline_ms <= now {
                    expired.push(e.msg);
                } else {
                    out.push(e.msg);
                }
            }
        }
    }

    /// Move every message whose deadline passed to `expired` (a periodic sweep, so
    /// expired messages are finished even while no carrier takes from the queue).
    pub fn expire(&mut self, now: u64, expired: &mut Vec<Arc<Message>>) {
        for heap in &mut self.classes {
            while heap.peek().is_some_and(|t| t.0.key <= now) {
                if let Some(Reverse(t)) = heap.pop() {
                    expired.push(t.msg);
                }
            }
        }
        if self.delayed.iter().any(|e| e.0.msg.deadline_ms <= now) {
            let mut keep = BinaryHeap::with_capacity(self.delayed.len());
            for Reverse(e) in self.delayed.drain() {
                if e.msg.deadline_ms <= now {
                    self.delayed_per_class[e.msg.class as usize] -= 1;
                    expired.push(e.msg);
                } else {
                    keep.push(Reverse(e));
                }
            }
            self.delayed = keep;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use otpgw_core::MsgId;
    use proptest::prelude::*;

    fn msg(id: u64, class: Class, deadline: u64) -> Arc<Message> {
        Arc::new(Message {
            id: MsgId(id),
            brand: "b".into(),
            to: Default::default(),
            body: Default::default(),
            class,
            accepted_ms: 0,
            deadline_ms: deadline,
            attempts: Default::default(),
            extra: None,
            origin: 0,
            progress: Default::default(),
            group: None,
        })
    }

    #[test]
    fn otp_before_bulk_and_edf_within() {
        let mut s = Scheduler::new(10);
        s.push(msg(1, Class::Bulk, 100));
        s.push(msg(2, Class::Otp, 500));
        s.push(msg(3, Class::Otp, 300));
        s.push(msg(4, Class::Bulk, 50));
        let mut exp = vec![];
        let order: Vec<u64> = std::iter::from_fn(|| s.pop(10, &mut exp))
            .map(|m| m.id.0)
            .collect();
        assert_eq!(order, vec![3, 2, 4, 1]);
        assert!(exp.is_empty());
    }

    #[test]
    fn expired_never_popped() {
        let mut s = Scheduler::new(10);
        s.push(msg(1, Class::Otp, 100));
        s.push(msg(2, Class::Otp, 200));
        let mut exp = vec![];
        assert_eq!(s.pop(100, &mut exp).map(|m| m.id.0), Some(2));
        assert_eq!(exp.iter().map(|m| m.id.0).collect::<Vec<_>>(), vec![1]);
    }

    #[test]
    fn sweep_and_capacity() {
        let mut s = Scheduler::new(2);
        s.push(msg(1, Class::Bulk, 100));
        assert!(!s.is_full());
        s.push(msg(2, Class::Otp, 300));
        assert!(s.is_full());
        let mut exp = vec![];
        s.expire(150, &mut exp);
        assert_eq!(exp.len(), 1);
        assert_eq!(s.len(), 1);
        assert_eq!(s.len_class(Class::Otp), 1);
    }

    proptest! {
        /// Against a reference: pops come out in (class, deadline, arrival) order, none
        /// expired at pop time, and every message is either popped or expired once.
        #[test]
        fn matches_reference(ops in proptest::collection::vec((any::<bool>(), 0u64..1000, 0u8..2), 1..200)) {
            let mut s = Scheduler::new(usize::MAX);
            let mut now = 0u64;
            let mut pushed = 0u64;
            let mut seen = std::collections::HashSet::new();
            for (is_push, v, c) in ops {
                if is_push {
                    pushed += 1;
                    let class = if c == 0 { Class::Otp } else { Class::Bulk };
                    s.push(msg(pushed, class, now + v));
                } else {
                    now += v / 10;
                    let mut exp = vec![];
                    let snapshot: Vec<(u8, u64)> = s.classes.iter().enumerate()
                        .flat_map(|(i, h)| h.iter().filter(|e| e.0.key > now).map(move |e| (i as u8, e.0.key)))
                        .collect();
                    if let Some(m) = s.pop(now, &mut exp) {
                        prop_assert!(m.deadline_ms > now);
                        let best = snapshot.iter().min().copied();
                        prop_assert_eq!(Some((m.class as u8, m.deadline_ms)), best);
                        prop_assert!(seen.insert(m.id));
                    }
                    for e in exp {
                        prop_assert!(e.deadline_ms <= now);
                        prop_assert!(seen.insert(e.id));
                    }
                }
            }
            let mut exp = vec![];
            while let Some(m) = s.pop(now, &mut exp) { prop_assert!(seen.insert(m.id)); }
            for e in exp { prop_assert!(seen.insert(e.id)); }
            prop_assert_eq!(seen.len() as u64, pushed);
        }
    }
}
