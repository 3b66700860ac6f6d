//! The simulator's queue of receipts waiting to be sent, each with a due time.
//! Receipts are held while no receiver is bound and survive connection drops.

use std::collections::VecDeque;
use std::time::Instant;

use parking_lot::Mutex;
use tokio::sync::Notify;

use otpgw_proto::receipt::DeliveryState;

/// A receipt the simulator owes the gateway.
#[derive(Debug, Clone)]
pub struct PendingReceipt {
    pub due: Instant,
    /// The id as it will appear in the receipt.
    pub receipt_id: String,
    pub state: DeliveryState,
    /// The original source and destination (swapped in the receipt).
    pub source: String,
    pub dest: String,
    /// The start of the message text, echoed in `text:` like real SMSCs do.
    pub text_echo: String,
}

/// FIFO of receipts; the delay is constant, so it is ordered by due time except for
/// receipts put back at the front after a lost connection (due already).
#[derive(Debug, Default)]
pub struct ReceiptQueue {
    q: Mutex<VecDeque<PendingReceipt>>,
    notify: Notify,
}

impl ReceiptQueue {
    /// Queue a receipt.
    pub fn push(&self, r: PendingReceipt) {
        self.q.lock().push_back(r);
        self.notify.notify_one();
    }

    /// Put unsent receipts back at the front.
    pub fn push_front(&self, rs: Vec<PendingReceipt>) {
        if rs.is_empty() {
            return;
        }
        let mut q = self.q.lock();
        for r in rs.into_iter().rev() {
            q.push_front(r);
        }
        drop(q);
        self.notify.notify_one();
    }

    /// Receipts waiting.
    pub fn len(&self) -> usize {
        self.q.lock().len()
    }

    /// Whether none are waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Wait until receipts are due, then take up to `max` of them. Cancel-safe.
    pub async fn take_due(&self, max: usize, out: &mut Vec<PendingReceipt>) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let next_due = {
                let mut q = self.q.lock();
                let now = Instant::now();
                while out.len() < max && q.front().is_some_and(|r| r.due <= now) {
                    if let Some(r) = q.pop_front() {
                        out.push(r);
                    }
                }
                if !out.is_empty() {
                    if q.front().is_some_and(|r| r.due <= now) {
                        self.notify.notify_one();
                    }
                    return;
                }
                q.front().map(|r| r.due)
            };
            match next_due {
                Some(due) => {
                    tokio::select! {
                        _ = notified => {}
                        _ = tokio::time::sleep_until(tokio::time::Instant::from_std(due)) => {
                            // Another waiter may have been notified for this one.
                            self.notify.notify_one();
                        }
                    }
                }
                None => notified.await,
            }
        }
    }
}
