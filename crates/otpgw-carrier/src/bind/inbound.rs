//! What a carrier bind receives: `submit_sm_resp` (the carrier's id recorded, or
//! the message retried or failed by the error), `deliver_sm` receipts (matched,
//! recorded, then acknowledged once durable), `enquire_link`, `unbind` and
//! malformed PDUs.

use std::sync::Arc;
use std::time::Instant;

use otpgw_core::clock::now_ms;
use otpgw_core::tracker::Finish;
use otpgw_core::{DeliveryState, Message};
use otpgw_dispatch::RetryCause;
use otpgw_proto::codec::Malformed;
use otpgw_proto::driver::PduSender;
use otpgw_proto::pdu::{self, DeliverView};
use otpgw_proto::rusmpp::{Command, Pdu};
use otpgw_proto::session::Session;
use otpgw_proto::status::{self, cmd};

use super::{BindError, Tag, resend_unit};
use crate::CarrierState;

/// Handle one PDU; `Ok(true)` means the session ended cleanly.
pub(super) async fn handle_command(
    shared: &Arc<CarrierState>,
    session: &mut Session<Tag>,
    tx: &PduSender,
    c: Command,
) -> Result<bool, BindError> {
    let now = now_ms();
    let id = u32::from(c.id());
    let st = u32::from(c.status());
    let seq = c.sequence_number();
    session.on_receive(now);
    match id {
        cmd::SUBMIT_SM_RESP | cmd::GENERIC_NACK => {
            if let Some(tag) = session.on_response(seq, now) {
                match tag {
                    Tag::Submit { msg, sent, part } => {
                        let carrier_id = pdu::submit_sm_resp_id(&c);
                        on_submit_resp(shared, msg, part, sent, st, carrier_id);
                    }
                    Tag::Unbind => return Ok(true),
                }
            }
        }
        cmd::DELIVER_SM => {
            let view = match c.pdu() {
                Some(Pdu::DeliverSm(d)) => Some(DeliverView::from_deliver_sm(d)),
                _ => None,
            };
            let tickets = view.map(|v| on_deliver(shared, &v)).unwrap_or_default();
            ack_when_durable(tx, seq, tickets).await?;
        }
        cmd::ENQUIRE_LINK => {
            tx.send(pdu::header_only(cmd::ENQUIRE_LINK_RESP, 0, seq))
                .await
                .map_err(|_| BindError::WriterGone)?;
        }
        cmd::ENQUIRE_LINK_RESP => {
            session.on_response(seq, now);
        }
        cmd::UNBIND => {
            tx.send(pdu::header_only(cmd::UNBIND_RESP, 0, seq))
                .await
                .map_err(|_| BindError::WriterGone)?;
            return Err(BindError::Unbound);
        }
        cmd::UNBIND_RESP => {
            if let Some(Tag::Unbind) = session.on_response(seq, now) {
                return Ok(true);
            }
        }
        other if cmd::is_response(other) => {
            session.on_response(seq, now);
        }
        _ => {
            tx.send(pdu::header_only(
                cmd::GENERIC_NACK,
                status::ESME_RINVCMDID,
                seq,
            ))
            .await
            .map_err(|_| BindError::WriterGone)?;
        }
    }
    Ok(false)
}

pub(super) async fn handle_malformed(
    shared: &Arc<CarrierState>,
    session: &mut Session<Tag>,
    tx: &PduSender,
    m: Malformed,
) -> Result<(), BindError> {
    metrics::counter!("otpgw_carrier_malformed_pdus_total", "carrier" => shared.cfg.name.clone())
        .increment(1);
    if m.is_fatal() {
        return Err(BindError::Unframeable);
    }
    let seq = m.sequence_number.unwrap_or(0);
    match m.command_id {
        Some(cmd::DELIVER_SM) => {
            // A receipt rusmpp refused (say, receipted_message_id without its NUL):
            // read it leniently, record it, and acknowledge it.
            let tickets = pdu::lenient_deliver_sm(&m.body)
                .map(|v| on_deliver(shared, &v))
                .unwrap_or_default();
            ack_when_durable(tx, seq, tickets).await?;
        }
        Some(cmd::SUBMIT_SM_RESP) => {
            // The carrier answered but its id is unreadable: the receipt can never be
            // matched, so the message is finished as UNKNOWN rather than kept forever.
            if let Some(Tag::Submit { msg, sent, part }) = session.on_response(seq, now_ms()) {
                let st = m.command_status.unwrap_or(status::ESME_RSYSERR);
                if st == status::ESME_ROK {
                    answered(shared, 1);
                    let _ = shared
                        .tracker
                        .finish(msg.id, DeliveryState::Unknown, None, now_ms());
                } else {
                    on_submit_resp(shared, msg, part, sent, st, None);
                }
            }
        }
        Some(id) if !cmd::is_response(id) => {
            tx.send(pdu::header_only(
                cmd::GENERIC_NACK,
                status::ESME_RINVCMDLEN,
                seq,
            ))
            .await
            .map_err(|_| BindError::WriterGone)?;
        }
        _ => {}
    }
    Ok(())
}

fn on_submit_resp(
    shared: &Arc<CarrierState>,
    msg: Arc<Message>,
    part: Option<bytes::Bytes>,
    sent: Instant,
    st: u32,
    carrier_id: Option<String>,
) {
    let name = &shared.cfg.name;
    shared.metrics.response.record(sent.elapsed().as_secs_f64());
    if st == status::ESME_ROK {
        shared.metrics.responses_ok.increment(1);
        shared.note_ok();
        if part.is_some() && shared.tracker.get(msg.id).is_none() {
            // Another part of this message already finished it (refused for good).
            answered(shared, 1);
            return;
        }
        let cid = carrier_id.unwrap_or_default();
        shared.tracker.confirmed(&msg, &shared.name, &cid, now_ms());
        let early = shared.matcher.lock().on_submitted(&cid, msg.id);
        for (id, r) in early {
            // Parked receipts were acknowledged when they arrived (kept in memory).
            let _ = apply_receipt(shared, id, &r);
        }
        return;
    }
    metrics::counter!("otpgw_carrier_responses_total", "carrier" => name.clone(), "status" => status::name(st))
        .increment(1);
    answered(shared, 1);
    if st == status::ESME_RTHROTTLED || st == status::ESME_RMSGQFUL {
        // Too fast: halve this carrier's rate (once per burst of such answers), and
        // offer the message again within a fraction of a second.
        shared.limiter.lock().on_throttled(now_ms());
        shared.retry(resend_unit(msg, part), RetryCause::Throttled);
    } else if status::is_temporary(st) {
        shared.retry(resend_unit(msg, part), RetryCause::Temporary);
    } else {
        let err = format!("{st:03x}");
        let _ = shared.tracker.refused(&msg, name, &err, now_ms());
    }
}

/// `n` submits ended without a success response: receipts may become deliverable.
pub(super) fn answered(shared: &Arc<CarrierState>, n: usize) {
    let ready = shared.matcher.lock().answered(n);
    for (id, r) in ready {
        let _ = apply_receipt(shared, id, &r);
    }
}

/// Acknowledge a `deliver_sm` once what it carried is durable. When the store fails,
/// the receipt is not acknowledged: the carrier sends it again.
async fn ack_when_durable(
    tx: &PduSender,
    seq: u32,
    tickets: Vec<otpgw_core::store::Ticket>,
) -> Result<(), BindError> {
    if tickets.iter().all(|t| t.is_ready()) {
        return tx
            .send(pdu::deliver_sm_resp(seq, status::ESME_ROK))
            .await
            .map_err(|_| BindError::WriterGone);
    }
    let tx = tx.clone();
    tokio::spawn(async move {
        for t in tickets {
            if !t.wait().await {
                return;
            }
        }
        let _ = tx.send(pdu::deliver_sm_resp(seq, status::ESME_ROK)).await;
    });
    Ok(())
}

/// Record a `deliver_sm`; returns the store tickets its receipt produced.
fn on_deliver(shared: &Arc<CarrierState>, v: &DeliverView) -> Vec<otpgw_core::store::Ticket> {
    if !v.is_receipt() {
        metrics::counter!("otpgw_carrier_mo_ignored_total", "carrier" => shared.cfg.name.clone())
            .increment(1);
        return Vec::new();
    }
    let Some(r) = v.receipt() else {
        metrics::counter!("otpgw_receipts_unmatched_total").increment(1);
        return Vec::new();
    };
    // Another node may have sent the message (a carrier delivers receipts on any
    // bind of the account): a receipt that parks here is published for the others
    // before it is acknowledged. Only a shared store needs the copy.
    let store = shared.tracker.store();
    let copy = store.is_shared().then(|| r.clone());
    let matched = shared.matcher.lock().on_receipt(r, now_ms());
    if matched.is_empty() {
        metrics::counter!("otpgw_receipts_parked_total", "carrier" => shared.cfg.name.clone())
            .increment(1);
        return copy
            .map(|r| store.publish_receipt(&shared.cfg.name, &r))
            .into_iter()
            .collect();
    }
    matched
        .into_iter()
        .map(|(id, r)| apply_receipt(shared, id, &r))
        .collect()
}

pub(crate) fn apply_receipt(
    shared: &Arc<CarrierState>,
    id: otpgw_core::MsgId,
    r: &pdu::CarrierReceipt,
) -> otpgw_core::store::Ticket {
    if !r.state.is_final() {
        return otpgw_core::store::Ticket::ready();
    }
    shared.metrics.receipt(r.state);
    if r.state == DeliveryState::Delivered && !shared.tracker.part_delivered(id) {
        // A part of a long message: it finishes when every part was delivered.
        return otpgw_core::store::Ticket::ready();
    }
    let (finish, ticket) =
        shared
            .tracker
            .receipt(id, &shared.cfg.name, r.state, r.err.as_deref(), now_ms());
    if let Finish::Done { accepted_ms, .. } = finish {
        shared
            .metrics
            .receipt_latency
            .record(now_ms().saturating_sub(accepted_ms) as f64 / 1000.0);
    }
    shared.matcher.lock().forget(id);
    ticket
}
