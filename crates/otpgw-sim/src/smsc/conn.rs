//! One connection to the simulated SMSC: binds, submits (answered, recorded, their
//! receipts planned), receipts sent to receivers, enquire_link, unbind.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use bytes::Bytes;
use otpgw_proto::clock::{now_ms, timer_at};
use otpgw_proto::codec::Frame;
use otpgw_proto::driver::{PduSender, reader, spawn_writer};
use otpgw_proto::pdu::{self, Address, SubmitFields};
use otpgw_proto::receipt::DeliveryState;
use otpgw_proto::rusmpp::{Command, CommandStatus, Pdu};
use otpgw_proto::session::{Admission, BindState, Role, Session, SessionConfig, Timeout, admit};
use otpgw_proto::status::{self, cmd};

use super::{ReceiptFormat, Received, RuleAction, State};
use crate::receipts::PendingReceipt;

enum Tag {
    Receipt(PendingReceipt),
}

/// Serve one connection (plain TCP, or TLS already shaken hands).
pub(super) async fn serve<S>(st: Arc<State>, stream: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let (rd, wr) = tokio::io::split(stream);
    let mut rx = reader(rd, 65_536);
    let (tx, _stats, writer) = spawn_writer(wr, 8192);
    let window = st.cfg.lock().window;
    let mut session: Session<Tag> = Session::new(
        SessionConfig {
            window,
            response_timeout: Duration::from_secs(10),
            enquire_link_interval: Duration::from_secs(30),
            enquire_link_timeout: Duration::from_secs(10),
        },
        now_ms(),
    );
    let mut drops = st.drop_gen.subscribe();
    let mut system_id = String::new();
    let connection = st.connections.fetch_add(1, Ordering::Relaxed);
    let mut bound = false;
    let mut due = Vec::new();
    loop {
        let can_deliver = session.state().can_deliver() && session.room() > 0;
        let room = session.room();
        let timer = timer_at(session.next_deadline());
        let stop = tokio::select! {
            biased;
            _ = drops.changed() => true,
            f = rx.next() => match f {
                None | Some(Err(_)) => true,
                Some(Ok(Frame::Malformed(m))) => {
                    let seq = m.sequence_number.unwrap_or(0);
                    send(&tx, pdu::header_only(cmd::GENERIC_NACK, status::ESME_RINVCMDLEN, seq)).await || m.is_fatal()
                }
                Some(Ok(Frame::Command(c))) => handle(&st, &tx, &mut session, (&mut system_id, connection), &mut bound, *c).await,
            },
            _ = st.receipts.take_due(room, &mut due), if can_deliver => {
                let mut stop = false;
                for r in due.drain(..) {
                    let seq = session.next_sequence();
                    let d = build_receipt(&st, &r);
                    if session.track(seq, Tag::Receipt(r.clone()), now_ms()).is_err() {
                        st.receipts.push_front(vec![r]);
                        continue;
                    }
                    if let Some(d) = d {
                        stop |= send(&tx, Command::new(CommandStatus::EsmeRok, seq, d)).await;
                    }
                }
                stop
            }
            _ = tokio::time::sleep_until(timer) => {
                let mut stop = false;
                for t in session.poll(now_ms()) {
                    match t {
                        Timeout::Response { tag: Tag::Receipt(r), .. } => st.receipts.push_front(vec![r]),
                        Timeout::SendEnquireLink { sequence_number } => {
                            stop |= send(&tx, pdu::header_only(cmd::ENQUIRE_LINK, 0, sequence_number)).await;
                        }
                        Timeout::LinkDead => stop = true,
                    }
                }
                stop
            }
        };
        if stop {
            break;
        }
    }
    // Receipts in flight on this connection were not acknowledged: keep them.
    let back: Vec<_> = session
        .drain()
        .into_iter()
        .map(|Tag::Receipt(r)| r)
        .collect();
    st.receipts.push_front(back);
    if bound {
        st.binds.fetch_sub(1, Ordering::Relaxed);
    }
    drop(tx);
    let _ = tokio::time::timeout(Duration::from_secs(1), writer).await;
}

/// Send a PDU; `true` when the connection is gone.
async fn send(tx: &PduSender, c: Command) -> bool {
    tx.send(c).await.is_err()
}

fn build_receipt(st: &State, r: &PendingReceipt) -> Option<otpgw_proto::rusmpp::pdus::DeliverSm> {
    let format = st.cfg.lock().receipt_format;
    let src = Address {
        ton: 1,
        npi: 1,
        addr: r.dest.clone(),
    };
    let dst = Address {
        ton: 1,
        npi: 1,
        addr: r.source.clone(),
    };
    let date = "2611261120";
    let text = format!(
        "id:{} sub:001 dlvrd:{} submit date:{date} done date:{date} stat:{} err:{} text:{}",
        r.receipt_id,
        if r.state == DeliveryState::Delivered {
            "001"
        } else {
            "000"
        },
        r.state.stat(),
        if r.state == DeliveryState::Delivered {
            "000"
        } else {
            "0x1B"
        },
        r.text_echo
    );
    let mut d = pdu::receipt_deliver_sm(&pdu::ReceiptPdu {
        source: &src,
        dest: &dst,
        message_id: &r.receipt_id,
        state: r.state,
        submit_date: date,
        done_date: date,
        err: "000",
    })
    .ok()?;
    let sm =
        otpgw_proto::rusmpp::types::OctetString::from_bytes(Bytes::from(text.into_bytes())).ok()?;
    d.set_short_message(sm);
    if format == ReceiptFormat::TextOnly {
        d.clear_tlvs();
    }
    Some(d)
}

/// Handle one PDU; `true` ends the connection.
async fn handle(
    st: &Arc<State>,
    tx: &PduSender,
    session: &mut Session<Tag>,
    (system_id, connection): (&mut String, u64),
    bound: &mut bool,
    c: Command,
) -> bool {
    let id = u32::from(c.id());
    let seq = c.sequence_number();
    let now = Instant::now();
    let now_ms = now_ms();
    session.on_receive(now_ms);
    if cmd::is_response(id) {
        if let Some(Tag::Receipt(r)) = session.on_response(seq, now_ms) {
            if u32::from(c.status()) == status::ESME_ROK {
                st.receipts_sent.fetch_add(1, Ordering::Relaxed);
            } else {
                st.receipts.push_front(vec![r]);
            }
        }
        return false;
    }
    match admit(Role::Smsc, session.state(), id) {
        Admission::GenericNack => {
            return send(
                tx,
                pdu::header_only(cmd::GENERIC_NACK, status::ESME_RINVCMDID, seq),
            )
            .await;
        }
        Admission::Refuse(s) => {
            return send(tx, pdu::header_only(cmd::response_of(id), s, seq)).await;
        }
        Admission::Allowed => {}
    }
    match id {
        cmd::BIND_TRANSMITTER | cmd::BIND_RECEIVER | cmd::BIND_TRANSCEIVER => {
            on_bind(st, tx, session, system_id, bound, &c).await
        }
        cmd::SUBMIT_SM => {
            on_submit(st, tx, session, (system_id, connection), &c, (now, now_ms)).await
        }
        cmd::ENQUIRE_LINK => send(tx, pdu::header_only(cmd::ENQUIRE_LINK_RESP, 0, seq)).await,
        cmd::UNBIND => {
            let _ = send(tx, pdu::header_only(cmd::UNBIND_RESP, 0, seq)).await;
            true
        }
        _ => {
            send(
                tx,
                pdu::header_only(cmd::GENERIC_NACK, status::ESME_RINVCMDID, seq),
            )
            .await
        }
    }
}

/// A bind: the credentials (when the simulator has some), then the bind state.
async fn on_bind(
    st: &Arc<State>,
    tx: &PduSender,
    session: &mut Session<Tag>,
    system_id: &mut String,
    bound: &mut bool,
    c: &Command,
) -> bool {
    let id = u32::from(c.id());
    let seq = c.sequence_number();
    let Some(req) = pdu::bind_request(c) else {
        return send(
            tx,
            pdu::header_only(cmd::response_of(id), status::ESME_RBINDFAIL, seq),
        )
        .await;
    };
    let ok = match &st.cfg.lock().credentials {
        None => true,
        Some((u, p)) => *u == req.params.system_id && *p == req.params.password,
    };
    if !ok {
        return send(
            tx,
            pdu::header_only(cmd::response_of(id), status::ESME_RBINDFAIL, seq),
        )
        .await;
    }
    *system_id = req.params.system_id;
    session.set_state(BindState::from_bind_command(id).unwrap_or(BindState::Transceiver));
    *bound = true;
    st.binds.fetch_add(1, Ordering::Relaxed);
    send(tx, pdu::bind_resp(id, seq, "simsmsc")).await
}

/// A `submit_sm`: a fault set on the simulator, its rate, then the message recorded,
/// its receipt planned (per-prefix rules), and the response (after the receipt
/// for a carrier that sends receipts early).
async fn on_submit(
    st: &Arc<State>,
    tx: &PduSender,
    session: &mut Session<Tag>,
    (system_id, connection): (&str, u64),
    c: &Command,
    (now, now_ms): (Instant, u64),
) -> bool {
    let seq = c.sequence_number();
    let Some(Pdu::SubmitSm(s)) = c.pdu() else {
        return send(
            tx,
            pdu::header_only(cmd::SUBMIT_SM_RESP, status::ESME_RSYSERR, seq),
        )
        .await;
    };
    match st.submit_fault.load(Ordering::Relaxed) {
        0 => {}
        u32::MAX => {
            st.faulted.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        err => {
            st.faulted.fetch_add(1, Ordering::Relaxed);
            return send(tx, pdu::header_only(cmd::SUBMIT_SM_RESP, err, seq)).await;
        }
    }
    if !st.admit_rate() {
        st.throttled.fetch_add(1, Ordering::Relaxed);
        return send(
            tx,
            pdu::header_only(cmd::SUBMIT_SM_RESP, status::ESME_RTHROTTLED, seq),
        )
        .await;
    }
    let fields = SubmitFields::from_submit_sm(s);
    let n = st.next_id.fetch_add(1, Ordering::Relaxed);
    let (mut outcome, resp_id, receipt_id, mut delay, early, rule) = {
        let cfg = st.cfg.lock();
        (
            cfg.outcomes.pick(n),
            cfg.resp_id_style.format(n),
            cfg.receipt_id_style.format(n),
            cfg.receipt_delay,
            cfg.early_receipts,
            cfg.rules
                .iter()
                .find(|r| r.applies(n, &fields.dest.addr))
                .map(|r| r.action),
        )
    };
    let mut wants = fields.registered_delivery & 0x03 != 0;
    let mut receipt_dropped = false;
    match rule {
        Some(RuleAction::DropReceipt) => {
            receipt_dropped = wants;
            wants = false;
        }
        Some(RuleAction::Delay(d)) => delay += d,
        Some(RuleAction::Undeliverable) => outcome = DeliveryState::Undeliverable,
        None => {}
    }
    let text_echo: String = String::from_utf8_lossy(fields.text())
        .chars()
        .take(20)
        .collect();
    let pending = PendingReceipt {
        due: now + if early { Duration::ZERO } else { delay },
        receipt_id,
        state: outcome,
        source: fields.source.addr.clone(),
        dest: fields.dest.addr.clone(),
        text_echo,
    };
    st.records.lock().push(Received {
        sim_id: n,
        system_id: system_id.to_string(),
        connection,
        fields,
        outcome,
        at: now,
        receipt_dropped,
    });
    if wants && early && session.state().can_deliver() && session.room() > 0 {
        // The receipt goes out before the response that carries the id.
        let rseq = session.next_sequence();
        if let Some(d) = build_receipt(st, &pending)
            && session
                .track(rseq, Tag::Receipt(pending.clone()), now_ms)
                .is_ok()
            && send(tx, Command::new(CommandStatus::EsmeRok, rseq, d)).await
        {
            return true;
        }
    } else if wants {
        st.receipts.push(pending);
    }
    send(tx, pdu::submit_sm_resp(seq, &resp_id)).await
}
