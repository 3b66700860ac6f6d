//! A brand session's receipts: recorded as sent before they are written (so a
//! crash's repeats are counted), sent as `deliver_sm` through the window, put back
//! first in line on back-pressure, dropped only after repeated explicit refusals.

use otpgw_core::outbox::ReceiptJob;
use otpgw_proto::pdu::{self, ReceiptPdu};
use otpgw_proto::rusmpp::{Command, CommandStatus};
use otpgw_proto::time::receipt_date;

use super::{Conn, End, MAX_MARKING, Tag};
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

    /// How many receipts to take now, whether to take, whether to write: receipts
    /// are taken ahead of the window (up to `MAX_MARKING` windows' worth held
    /// here), so their "sent" records commit while the brand answers earlier ones.
    pub(super) fn receipt_flow(&self) -> (usize, bool, bool) {
        let held = self.ready.len() + self.marked.iter().map(Vec::len).sum::<usize>();
        let take = (self.ctx.cfg.receipt_window.max(1) * MAX_MARKING).saturating_sub(held);
        let can_take = self.outbox.is_some() && take > 0 && self.marking.len() < MAX_MARKING;
        let can_send = !self.ready.is_empty() && self.session.room() > 0;
        (take, can_take, can_send)
    }

    /// Receipts taken for this session: those never written to a brand are
    /// recorded as sent (so that after a crash each one sent again is counted as
    /// possibly delivered twice); the batch is written once that record is
    /// committed (one group commit per batch, batches in order, up to
    /// `MAX_MARKING` at once, taken ahead of the window so the session never waits
    /// for the disk). With a store that keeps nothing the commit is ready at once.
    pub(super) fn mark_sent(&mut self, jobs: &mut Vec<ReceiptJob>) {
        let store = self.ctx.acceptor.store().clone();
        let mut any = false;
        if store.is_durable() {
            for j in jobs.iter_mut().filter(|j| !j.sent) {
                j.sent = true;
                store.owe(j);
                any = true;
            }
        }
        let ticket = if any {
            store.flush()
        } else {
            otpgw_core::store::Ticket::ready()
        };
        self.marked.push_back(std::mem::take(jobs));
        self.marking.push_back(Box::pin(ticket.wait()));
    }

    /// The oldest batch's "sent" records are committed (`ok`): it is ready to be
    /// written; if the store failed, it goes back to the outbox, first in line.
    pub(super) fn marked(&mut self, ok: bool) {
        let jobs = self.marked.pop_front().unwrap_or_default();
        if ok {
            self.ready.extend(jobs);
        } else if let Some(o) = &self.outbox {
            o.push_front(jobs);
        }
    }

    /// Write as many ready receipts as the window has room for.
    pub(super) async fn send_ready(&mut self) -> Option<End> {
        let n = self.session.room().min(self.ready.len());
        let mut jobs: Vec<ReceiptJob> = self.ready.drain(..n).collect();
        self.send_receipts(&mut jobs).await
    }

    /// Write `jobs` as `deliver_sm` through the window.
    async fn send_receipts(&mut self, jobs: &mut Vec<ReceiptJob>) -> Option<End> {
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
