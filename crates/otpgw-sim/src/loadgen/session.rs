//! One bind of the load generator: connect and bind, then submit at the rate (or
//! as the window allows), take responses and receipts, and unbind.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use tokio::net::TcpStream;

use otpgw_proto::clock::now_ms;
use otpgw_proto::codec::Frame;
use otpgw_proto::driver::{reader, spawn_writer_with};
use otpgw_proto::pdu::{self, Address, BindParams, DeliverView, SubmitFields};
use otpgw_proto::rusmpp::{Command, CommandStatus, Pdu};
use otpgw_proto::session::{Session, SessionConfig, Timeout};
use otpgw_proto::status::{self, cmd};

use super::{LoadConfig, LoadError, RunState, dest_for, encoded_text_for, is_otp, record_receipt};

pub(super) struct Conn {
    rx: tokio_util::codec::FramedRead<
        tokio::net::tcp::OwnedReadHalf,
        otpgw_proto::codec::SmppCodec,
    >,
    tx: otpgw_proto::driver::PduSender,
    writer: tokio::task::JoinHandle<std::io::Result<()>>,
    pub(super) seq_start: u32,
}

pub(super) async fn connect(cfg: &LoadConfig) -> Result<Conn, LoadError> {
    let s = TcpStream::connect(cfg.addr).await?;
    let _ = s.set_nodelay(true);
    let (rd, wr) = s.into_split();
    let mut rx = reader(rd, 65_536);
    let batch = if cfg.flush_each { 0 } else { 64 * 1024 };
    let (tx, _st, writer) = spawn_writer_with(wr, cfg.window.max(16) * 2, batch);
    let p = BindParams {
        system_id: cfg.system_id.clone(),
        password: cfg.password.clone(),
        system_type: String::new(),
    };
    let b = pdu::bind(cmd::BIND_TRANSCEIVER, 1, &p).map_err(|_| LoadError::BindRefused(0))?;
    tx.send(b).await.map_err(|_| LoadError::NoBindResponse)?;
    let resp = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match rx.next().await {
                Some(Ok(Frame::Command(c))) if c.sequence_number() == 1 => return Some(c),
                Some(Ok(_)) => continue,
                _ => return None,
            }
        }
    })
    .await
    .ok()
    .flatten()
    .ok_or(LoadError::NoBindResponse)?;
    let st = u32::from(resp.status());
    if st != status::ESME_ROK {
        return Err(LoadError::BindRefused(st));
    }
    Ok(Conn {
        rx,
        tx,
        writer,
        seq_start: 1,
    })
}

pub(super) async fn bind_loop(cfg: LoadConfig, sh: Arc<RunState>, mut conn: Conn, start: Instant) {
    let mut session: Session<(u64, Instant)> = Session::new(
        SessionConfig {
            window: cfg.window.max(1),
            response_timeout: Duration::from_secs(30),
            enquire_link_interval: Duration::from_secs(30),
            enquire_link_timeout: Duration::from_secs(10),
        },
        now_ms(),
    );
    for _ in 0..conn.seq_start {
        session.next_sequence();
    }
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut all_sent = false;
    // An index claimed from the shared counter but not yet due (paced runs).
    let mut claimed: Option<u64> = None;
    let far = tokio::time::Instant::now() + Duration::from_secs(86_400);
    loop {
        // Send what is due while the window has room and messages remain.
        let mut wake = far;
        while !all_sent && session.room() > 0 {
            let i = match claimed.take() {
                Some(i) => i,
                None => sh.next.fetch_add(1, Ordering::Relaxed),
            };
            if cfg.duration.is_some_and(|d| start.elapsed() >= d) {
                sh.limit.fetch_min(i, Ordering::Relaxed);
            }
            if i >= sh.limit.load(Ordering::Relaxed) {
                all_sent = true;
                break;
            }
            let i = i + cfg.first_index;
            if let Some(rate) = cfg.rate {
                let due = start
                    + Duration::from_secs_f64(
                        (i - cfg.first_index) as f64 / f64::from(rate.max(1)),
                    );
                if due > Instant::now() {
                    claimed = Some(i - cfg.first_index);
                    wake = tokio::time::Instant::from_std(due);
                    break;
                }
            }
            let Some(s) = submit_for(&cfg, i) else {
                continue;
            };
            let seq = session.next_sequence();
            let now = Instant::now();
            if session.track(seq, (i, now), now_ms()).is_err() {
                claimed = Some(i - cfg.first_index);
                break;
            }
            if conn
                .tx
                .send(Command::new(CommandStatus::EsmeRok, seq, s))
                .await
                .is_err()
            {
                return;
            }
            sh.progress.sent.fetch_add(1, Ordering::Relaxed);
        }
        if all_sent && session.in_flight() == 0 && receipts_done(&cfg, &sh) {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(wake), if wake < far => {}
            f = conn.rx.next() => match f {
                None | Some(Err(_)) => break,
                Some(Ok(Frame::Command(c))) => on_command(&cfg, &sh, &mut session, &conn.tx, *c).await,
                Some(Ok(Frame::Malformed(m))) => {
                    let _ = conn.tx.send(pdu::header_only(cmd::GENERIC_NACK, status::ESME_RINVCMDLEN, m.sequence_number.unwrap_or(0))).await;
                }
            },
            _ = tick.tick() => {
                for t in session.poll(now_ms()) {
                    match t {
                        Timeout::SendEnquireLink { sequence_number } => {
                            let _ = conn.tx.send(pdu::header_only(cmd::ENQUIRE_LINK, 0, sequence_number)).await;
                        }
                        Timeout::LinkDead => return,
                        Timeout::Response { .. } => {
                            *sh.inner.lock().rejected.entry(u32::MAX).or_default() += 1;
                            sh.responses.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                if all_sent && session.in_flight() == 0 && receipt_wait_over(&cfg, &sh) {
                    break;
                }
            }
        }
    }
    unbind(&mut session, conn).await;
}

fn receipts_done(cfg: &LoadConfig, sh: &RunState) -> bool {
    let answered = sh.responses.load(Ordering::Relaxed) >= sh.limit.load(Ordering::Relaxed);
    let receipts = sh.progress.receipts.load(Ordering::Relaxed);
    if let Some(n) = cfg.expect_receipts {
        return answered && receipts >= n;
    }
    if cfg.registered_delivery & 0x03 == 0 {
        return answered;
    }
    // Receipts for an earlier run's messages (still owed to the brand) do not count.
    answered
        && sh.own_receipts.load(Ordering::Relaxed)
            >= sh.accepted_wanting_receipt.load(Ordering::Relaxed)
}

fn receipt_wait_over(cfg: &LoadConfig, sh: &RunState) -> bool {
    if receipts_done(cfg, sh) {
        return true;
    }
    let i = sh.inner.lock();
    let last = i
        .last_receipt
        .into_iter()
        .chain(i.last_response)
        .chain(i.started)
        .max();
    last.is_some_and(|t| t.elapsed() >= cfg.receipt_timeout)
}

async fn on_command(
    cfg: &LoadConfig,
    sh: &RunState,
    session: &mut Session<(u64, Instant)>,
    tx: &otpgw_proto::driver::PduSender,
    c: Command,
) {
    let id = u32::from(c.id());
    let st = u32::from(c.status());
    let seq = c.sequence_number();
    let now = Instant::now();
    let now_ms = now_ms();
    session.on_receive(now_ms);
    match id {
        cmd::SUBMIT_SM_RESP | cmd::GENERIC_NACK => {
            if let Some((i, sent)) = session.on_response(seq, now_ms) {
                let mut inner = sh.inner.lock();
                let lat = now.saturating_duration_since(sent).as_micros().max(1) as u64;
                if let Some(h) = inner.resp_lat.as_mut() {
                    let _ = h.record(lat);
                }
                inner.last_response = Some(now);
                if let Some(slot) = inner.slot(now) {
                    if st == status::ESME_ROK {
                        slot.accepted += 1;
                    } else {
                        slot.refused += 1;
                    }
                    let h = slot.resp.get_or_insert_with(|| {
                        Histogram::new_with_bounds(1, 60_000_000, 2).expect("valid bounds")
                    });
                    let _ = h.record(lat);
                }
                if st == status::ESME_ROK {
                    sh.progress.accepted.fetch_add(1, Ordering::Relaxed);
                    match inner.last_accept {
                        Some(last) => {
                            let gap = now.saturating_duration_since(last);
                            if gap > inner.longest_accept_gap {
                                inner.longest_accept_gap = gap;
                                inner.longest_accept_gap_from = Some(last);
                            }
                        }
                        None => inner.first_accept = Some(now),
                    }
                    inner.last_accept = Some(now);
                    let mid = pdu::submit_sm_resp_id(&c).unwrap_or_default();
                    inner.ids.insert(i, mid.clone());
                    inner.by_id.insert(mid.clone(), (i, sent));
                    if cfg.registered_delivery & 0x03 != 0 {
                        sh.accepted_wanting_receipt.fetch_add(1, Ordering::Relaxed);
                    }
                    // Receipts that overtook their response.
                    let early: Vec<_> = inner
                        .early
                        .iter()
                        .filter(|(r, _, _)| *r == mid)
                        .cloned()
                        .collect();
                    inner.early.retain(|(r, _, _)| *r != mid);
                    for (r, state, at) in early {
                        if record_receipt(&mut inner, r, state, at) {
                            sh.own_receipts.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                } else {
                    sh.progress.refused.fetch_add(1, Ordering::Relaxed);
                    *inner.rejected.entry(st).or_default() += 1;
                    inner.refused.insert(i);
                }
                drop(inner);
                sh.responses.fetch_add(1, Ordering::Relaxed);
            }
        }
        cmd::DELIVER_SM => {
            if let Some(Pdu::DeliverSm(d)) = c.pdu() {
                let v = DeliverView::from_deliver_sm(d);
                if let Some(r) = v.receipt() {
                    let mut inner = sh.inner.lock();
                    inner.last_receipt = Some(now);
                    if let Some(slot) = inner.slot(now) {
                        slot.receipts += 1;
                    }
                    if inner.by_id.contains_key(&r.id) {
                        if record_receipt(&mut inner, r.id, r.state, now) {
                            sh.own_receipts.fetch_add(1, Ordering::Relaxed);
                        }
                    } else {
                        inner.early.push((r.id, r.state, now));
                    }
                    drop(inner);
                    sh.progress.receipts.fetch_add(1, Ordering::Relaxed);
                }
            }
            let _ = tx.send(pdu::deliver_sm_resp(seq, status::ESME_ROK)).await;
        }
        cmd::ENQUIRE_LINK => {
            let _ = tx
                .send(pdu::header_only(cmd::ENQUIRE_LINK_RESP, 0, seq))
                .await;
        }
        cmd::UNBIND => {
            let _ = tx.send(pdu::header_only(cmd::UNBIND_RESP, 0, seq)).await;
        }
        _ => {
            session.on_response(seq, now_ms);
        }
    }
}

/// The `submit_sm` of message `i` of the run.
fn submit_for(cfg: &LoadConfig, i: u64) -> Option<otpgw_proto::rusmpp::pdus::SubmitSm> {
    let text = Bytes::from(encoded_text_for(i, cfg.text_len, cfg.data_coding));
    let (short_message, message_payload) = if text.len() > 254 {
        (Bytes::new(), Some(text))
    } else {
        (text, None)
    };
    let f = SubmitFields {
        source: Address {
            ton: 5,
            npi: 0,
            addr: cfg.source.clone(),
        },
        dest: Address {
            ton: 1,
            npi: 1,
            addr: dest_for(i),
        },
        esm_class: 0,
        priority_flag: if is_otp(i, cfg.otp_percent) {
            cfg.priority_flag
        } else {
            0
        },
        registered_delivery: cfg.registered_delivery,
        data_coding: cfg.data_coding,
        short_message,
        message_payload,
        validity_period: cfg.validity_period.clone(),
        ..Default::default()
    };
    f.to_submit_sm().ok()
}

/// Unbind politely (what the server says is ignored), then let the writer finish.
async fn unbind(session: &mut Session<(u64, Instant)>, mut conn: Conn) {
    // Unbind politely; ignore what the server says.
    let seq = session.next_sequence();
    let _ = conn.tx.send(pdu::header_only(cmd::UNBIND, 0, seq)).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(f)) = conn.rx.next().await {
            if let Frame::Command(c) = f
                && u32::from(c.id()) == cmd::UNBIND_RESP
            {
                break;
            }
        }
    })
    .await;
    drop(conn.tx);
    let _ = tokio::time::timeout(Duration::from_secs(2), conn.writer).await;
}
