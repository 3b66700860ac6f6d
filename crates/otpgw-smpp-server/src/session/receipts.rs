//! A brand session's receipts: recorded as sent before they are written (so a
//! crash's repeats are counted), sent as `deliver_sm` through the window, put back
//! first in line on back-pressure, dropped only after repeated explicit refusals.

use otpgw_core::outbox::ReceiptJob;
use otpgw_proto::pdu::{self, ReceiptPdu};
use otpgw_proto::rusmpp::{Command, CommandStatus};
use otpgw_proto::time::receipt_date;

use super::{Conn, End, Tag};
use otpgw_core::clock::now_ms;

impl Conn {
    /// The brand refused a receipt: put it back for another try, unless it refused
    /// it `max_receipt_attempts` times (then it is dropped, counted and logged).
    pub(super) fn receipt_refused(&self, mut job: ReceiptJob) {
        job.attempts = job.attempts.saturating_add(1);
        if job.attempts >= self.ctx.cfg.max_receipt_attempts {
            metrics::counter!("otpgw_receipts_dropped_total").increment(1);
            tracing::warn!(
                brand = %job.brand,
                id = %self.ctx.acceptor.ids().hide(job.message_id()),
                attempts = job.attempts,
                "receipt dropped: the brand refused it every time"
            );
            return;
        }
        self.receipt_wait(job);
    }

    /// Back-pressure (a full window, a throttled or unanswered receipt): the receipt
    /// goes back first in line, not counted as an attempt.
    pub(super) fn receipt_wait(&self, job: ReceiptJob) {
        if let Some(o) = &self.outbox {
            o.push_front([job]);
        }
    }

    /// Record in the store that `jobs` are about to be written to this session
    /// (one group commit for the batch), so that after a crash each one sent again
    /// is counted as possibly delivered twice. `false` when the store failed: the
    /// receipts go back, first in line.
    async fn mark_sent(&mut self, jobs: &mut Vec<ReceiptJob>) -> bool {
        let store = self.ctx.acceptor.store();
        if !store.is_durable() {
            return true;
        }
        let mut marked = false;
        for j in jobs.iter_mut().filter(|j| !j.sent) {
            j.sent = true;
            store.owe(j);
            marked = true;
        }
        if marked && !store.flush().wait().await {
            if let Some(o) = &self.outbox {
                o.push_front(jobs.drain(..));
            }
            return false;
        }
        true
    }

    pub(super) async fn send_receipts(&mut self, jobs: &mut Vec<ReceiptJob>) -> Option<End> {
        if !self.mark_sent(jobs).await {
            return None;
        }
        let now = now_ms();
        let mut batch = jobs.drain(..);
        // Not a `for` loop: on a write failure the rest of `batch` goes back.
        #[allow(clippy::while_let_on_iterator)]
        while let Some(job) = batch.next() {
            // A submit_multi destination's receipt carries the submission's id.
            let shown = job.group.unwrap_or_else(|| job.message_id());
            let id = self.ctx.acceptor.ids().hide(shown).to_string();
            let submit = receipt_date(job.submit_ms);
            let done = receipt_date(job.done_ms);
            let err: String = job.err.chars().take(3).collect();
            let built = pdu::receipt_deliver_sm(&ReceiptPdu {
                source: &job.source,
                dest: &job.dest,
                message_id: &id,
                state: job.state,
                submit_date: &submit,
                done_date: &done,
                err: &err,
            });
            let d = match built {
                Ok(d) => d,
                Err(_) => {
                    metrics::counter!("otpgw_receipts_dropped_total").increment(1);
                    continue;
                }
            };
            let seq = self.session.next_sequence();
            if let Err(otpgw_proto::session::WindowFull(_)) =
                self.session.track(seq, Tag::Receipt(job.clone()), now)
            {
                // Back-pressure: this one and the rest go back, in order.
                if let Some(o) = &self.outbox {
                    o.push_front(std::iter::once(job).chain(batch));
                }
                return None;
            }
            if let Some(e) = self
                .send(Command::new(CommandStatus::EsmeRok, seq, d))
                .await
            {
                // The connection is gone: the one tracked goes back when the session
                // is drained, the rest go back now.
                if let Some(o) = &self.outbox {
                    o.push_front(batch);
                }
                return Some(e);
            }
        }
        None
    }
}
