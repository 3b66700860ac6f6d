//! Sending a batch a bind took from its queue: what the carrier's rate allows now,
//! each message's "sent" mark made durable first, the rate shared with other nodes
//! asked last, then the `submit_sm`s (a long text as concatenated parts, all on
//! this bind).

use std::sync::Arc;
use std::time::Instant;

use otpgw_core::clock::now_ms;
use otpgw_core::{DeliveryState, Message};
use otpgw_proto::driver::PduSender;
use otpgw_proto::rusmpp::Command;
use otpgw_proto::session::Session;
use otpgw_proto::split::{self, Plan};
use otpgw_proto::time::relative_smpp_time;

use super::{BindError, Tag};
use crate::CarrierState;

/// Send `out` (taken from the queue for this bind); what cannot go now goes back
/// to the queue. `rate_wait` is set when the carrier's rate allows nothing more
/// until then.
pub(super) async fn batch(
    shared: &Arc<CarrierState>,
    session: &mut Session<Tag>,
    tx: &PduSender,
    out: &mut Vec<Arc<Message>>,
    rate_wait: &mut Option<tokio::time::Instant>,
) -> Result<(), BindError> {
    // Messages the brand cancelled (or replaced) while queued are never sent.
    out.retain(|m| !m.is_cancelled());
    if shared.is_paused() {
        // Paused while this bind was waiting: the messages go back.
        for m in out.drain(..) {
            shared.queue.push(m, now_ms());
        }
        return Ok(());
    }
    // The carrier's rate: send what it allows now, the rest goes back.
    let granted = {
        let mut l = shared.limiter.lock();
        let now = now_ms();
        let g = l.take(out.len(), now);
        if g < out.len() {
            *rate_wait = l.next_token_at(now).map(otpgw_core::clock::timer_at);
        }
        g
    };
    for m in out.drain(granted..) {
        shared.queue.push(m, now_ms());
    }
    // What goes now cannot be cancelled or replaced from here on; what went back
    // to the queue still can. One cancelled in the meantime is dropped.
    out.retain(|m| m.claim_send());
    if out.is_empty() {
        return Ok(());
    }
    // Mark them sent (one shared commit), then write them.
    let timeout = shared.cfg.receipt_timeout.map(|t| t.as_millis() as u64);
    let now = now_ms();
    let marks: Vec<_> = out
        .iter()
        .map(|m| shared.tracker.sending(m, &shared.name, timeout, now))
        .collect();
    let mut durable = true;
    for t in marks {
        durable &= t.wait().await;
    }
    if !durable {
        // The store failed: put them back rather than send unrecorded.
        for m in out.drain(..) {
            m.release_claim();
            shared.queue.push(m, now_ms());
        }
        tokio::time::sleep(shared.cfg.retry_delay).await;
        return Ok(());
    }
    // The rate shared with other nodes, asked last so the grant is
    // spent at once (what it refuses goes back, marked as possibly sent).
    let cap = shared.limiter.lock().cap();
    if let (Some(sl), Some(rate)) = (&shared.cfg.shared_limit, cap) {
        let want = out.len();
        let got = shared_grant(shared, sl.as_ref(), rate, want, rate_wait).await;
        for m in out.drain(got..) {
            shared.queue.push(m, now_ms());
        }
    }
    let mut batch = out.drain(..);
    while let Some(msg) = batch.next() {
        if let Err(e) = send_submit(shared, session, tx, msg).await {
            // The link failed mid-batch: what was not written goes back.
            for m in batch {
                shared.queue.push(m, now_ms());
            }
            return Err(e);
        }
    }
    Ok(())
}

async fn send_submit(
    shared: &Arc<CarrierState>,
    session: &mut Session<Tag>,
    tx: &PduSender,
    msg: Arc<Message>,
) -> Result<(), BindError> {
    let now = now_ms();
    if session.room() == 0 {
        shared.queue.push(msg, now);
        return Ok(());
    }
    // Tell the carrier when to give up: never later than our own deadline. An
    // absolute validity_period is the deadline itself and goes on unchanged; none, or
    // a relative one (which the carrier would count from now, not from acceptance),
    // becomes the time left.
    // The SMPP fields of the SMS, derived here where it is sent.
    let Some(fields) = msg.sms_fields() else {
        return unsendable(shared, &msg, now, &"not an SMS");
    };
    let vp = &fields.validity_period;
    let validity = (vp.is_empty() || vp.ends_with('R'))
        .then(|| relative_smpp_time(msg.deadline_ms.saturating_sub(now)));
    let validity = validity.as_deref();
    match split::plan(&fields, shared.next_reference()) {
        // The common case: one PDU, no intermediate collections.
        Ok(Plan::AsIs) => match fields.to_submit_sm_part(validity, None, false) {
            Ok(submit) => {
                record_queue_wait(shared, &msg, now);
                submit_one(shared, session, tx, &msg, submit, None).await
            }
            Err(e) => unsendable(shared, &msg, now, &e),
        },
        Ok(Plan::Parts(bodies)) => {
            let udh = bodies.len() > 1;
            let pdus: Result<Vec<_>, _> = bodies
                .iter()
                .map(|b| fields.to_submit_sm_part(validity, Some(b), udh))
                .collect();
            let pdus = match pdus {
                Ok(p) => p,
                Err(e) => return unsendable(shared, &msg, now, &e),
            };
            if udh {
                shared.tracker.expect_parts(msg.id, pdus.len() as u32);
            }
            record_queue_wait(shared, &msg, now);
            // Every part on this bind, one after the other: the first took a window
            // slot, the others may go beyond it (a long message never spans binds).
            for (submit, body) in pdus.into_iter().zip(bodies) {
                submit_one(shared, session, tx, &msg, submit, udh.then_some(body)).await?;
            }
            Ok(())
        }
        Err(e) => unsendable(shared, &msg, now, &e),
    }
}

fn record_queue_wait(shared: &CarrierState, msg: &Message, now: u64) {
    shared
        .metrics
        .queue_wait
        .record(now.saturating_sub(msg.accepted_ms) as f64 / 1000.0);
}

/// A message that cannot be encoded or split is finished as UNDELIVERABLE.
fn unsendable(
    shared: &CarrierState,
    msg: &Message,
    now: u64,
    e: &dyn std::fmt::Display,
) -> Result<(), BindError> {
    tracing::warn!(carrier = %shared.cfg.name, id = %msg.id, error = %e, "message cannot be sent");
    shared
        .tracker
        .finish(msg.id, DeliveryState::Undeliverable, Some("ENC"), now);
    Ok(())
}

/// Track and write one `submit_sm` (a message, or one part of it).
async fn submit_one(
    shared: &CarrierState,
    session: &mut Session<Tag>,
    tx: &PduSender,
    msg: &Arc<Message>,
    submit: otpgw_proto::rusmpp::pdus::SubmitSm,
    part: Option<bytes::Bytes>,
) -> Result<(), BindError> {
    let seq = session.next_sequence();
    let sent = Instant::now();
    let tag = Tag::Submit {
        msg: msg.clone(),
        sent,
        part,
    };
    session.track_beyond_window(seq, tag, now_ms());
    shared.matcher.lock().sent();
    shared.count_submit();
    let command = Command::new(otpgw_proto::rusmpp::CommandStatus::EsmeRok, seq, submit);
    tx.send(command).await.map_err(|_| BindError::WriterGone)?;
    shared.metrics.submitted.increment(1);
    Ok(())
}

/// Ask the rate limit shared with other nodes for `want` of the tokens this node's
/// own limiter granted; what it refuses goes back to the local limiter and the bind
/// waits a little (5 ms; 50 ms when the shared state is unreachable: then nothing
/// is sent, as the store cannot record sends either).
async fn shared_grant(
    shared: &CarrierState,
    sl: &dyn otpgw_core::shared_limit::SharedLimit,
    rate: f64,
    want: usize,
    rate_wait: &mut Option<tokio::time::Instant>,
) -> usize {
    let burst = otpgw_dispatch::limiter::burst(rate);
    let (got, wait_ms) = match sl.take(&shared.cfg.name, rate, burst, want).await {
        Ok(g) => (g.min(want), 5),
        Err(e) => {
            tracing::warn!(carrier = %shared.cfg.name, error = %e, "shared rate limit unreachable: not sending");
            (0, 50)
        }
    };
    if got < want {
        shared.limiter.lock().refund(want - got);
        *rate_wait = Some(tokio::time::Instant::now() + std::time::Duration::from_millis(wait_ms));
    }
    got
}
