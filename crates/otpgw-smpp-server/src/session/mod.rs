//! One brand connection.
//!
//! Handles binds (credentials from the config; every failure is ESME_RBINDFAIL so
//! nothing tells which part was wrong), `submit_sm` (validated and accepted, answered
//! with otpgw's message id), `enquire_link`, `unbind`, `generic_nack` for unknown
//! commands and ESME_RINVBNDSTS for commands the bind state does not allow. On a
//! receiver or transceiver bind it also takes the brand's receipts from the outbox
//! and sends them as `deliver_sm` through a window; a receipt refused, unanswered or
//! cut off by the connection's end goes back to the front of the outbox. Only an
//! explicit refusal (a `deliver_sm_resp` with an error status other than
//! ESME_RTHROTTLED or ESME_RMSGQFUL) counts as an attempt: back-pressure (a full
//! window, a throttled or unanswered receipt, a closed connection) never does, so
//! no receipt is dropped because the brand is slow.

use std::net::SocketAddr;
use std::sync::Arc;

use std::time::Instant;

use futures_util::FutureExt;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::time::sleep_until;

use otpgw_core::clock::now_ms;
use otpgw_core::outbox::{BrandOutbox, ReceiptJob};
use otpgw_core::public_id::IdCipher;
use otpgw_proto::codec::{Frame, Malformed};
use otpgw_proto::driver::{PduSender, reader, spawn_writer};
use otpgw_proto::pdu::{self, SubmitFields};
use otpgw_proto::rusmpp::Command;
use otpgw_proto::session::{Admission, BindState, Role, Session, SessionConfig, Timeout, admit};
use otpgw_proto::status::{self, cmd};

use crate::context::Context;

mod bind;
mod ops;
mod receipts;
use otpgw_accept::AcceptError;
use otpgw_accept::BrandConfig;

/// Ids of bound sessions (receipts go back to the session that submitted).
static NEXT_SESSION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Outstanding requests this side sent.
#[derive(Debug)]
enum Tag {
    Receipt(ReceiptJob),
    Unbind,
}

/// Why the loop ended.
enum End {
    Closed,
    Fatal,
}

struct Conn {
    ctx: Arc<Context>,
    tx: PduSender,
    session: Session<Tag>,
    brand: Option<Arc<BrandConfig>>,
    /// The brand's receipts, when this session takes them (receiver, transceiver).
    outbox: Option<Arc<BrandOutbox>>,
    /// The brand's outbox, for any bind: submits are throttled while it is full.
    brand_outbox: Option<Arc<BrandOutbox>>,
    /// This session's id once bound (0 before): its submits' receipts come back to
    /// it (see `BrandOutbox::register`).
    sid: u64,
    peer: SocketAddr,
    /// Submits of this session waiting for the store, polled by the session task
    /// itself (no task per submit); each answers with its sequence number.
    accepts: FuturesUnordered<AcceptFuture>,
    /// Receipts recorded as sent, waiting for that record's commit before they are
    /// written (batches in order, a few at once), and the commits.
    marked: std::collections::VecDeque<Vec<ReceiptJob>>,
    marking: futures_util::stream::FuturesOrdered<MarkFuture>,
    /// Receipts whose record is committed, in order, written as the window allows.
    ready: std::collections::VecDeque<ReceiptJob>,
}

/// Batches of receipts whose "sent" records may be committing at once.
const MAX_MARKING: usize = 4;

/// The commit of a batch of receipts' "sent" records.
type MarkFuture = std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>>;

/// A request that submits a message: its sequence number and the command id of
/// its response (`submit_sm_resp` or `data_sm_resp`).
#[derive(Debug, Clone, Copy)]
struct Req {
    seq: u32,
    resp: u32,
}

/// An acceptance ended: its request, outcome, when the submit was read, and for a
/// `submit_multi` what came of each number.
type Accepted = (
    Req,
    Result<otpgw_core::MsgId, AcceptError>,
    Instant,
    Option<Box<otpgw_accept::multi::MultiOutcome>>,
);

/// An acceptance under way.
type AcceptFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Accepted> + Send>>;

impl Conn {
    /// A connection's state before its bind.
    fn new(ctx: Arc<Context>, tx: PduSender, peer: SocketAddr) -> Self {
        let scfg = SessionConfig {
            window: ctx.cfg.receipt_window.max(1),
            response_timeout: ctx.cfg.response_timeout,
            enquire_link_interval: ctx.cfg.enquire_link_interval,
            enquire_link_timeout: ctx.cfg.enquire_link_timeout,
        };
        Conn {
            ctx,
            tx,
            session: Session::new(scfg, now_ms()),
            brand: None,
            outbox: None,
            brand_outbox: None,
            sid: 0,
            peer,
            accepts: FuturesUnordered::new(),
            marked: Default::default(),
            marking: Default::default(),
            ready: Default::default(),
        }
    }
}

/// Serve one connection (its read and write halves, plain or TLS) until it closes;
/// returns whether it ever bound.
pub async fn run<R, W>(ctx: Arc<Context>, rd: R, wr: W, peer: SocketAddr) -> bool
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
    W: tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut rx = reader(rd, ctx.cfg.max_frame);
    let (tx, _stats, writer) = spawn_writer(wr, 4096);
    let mut c = Conn::new(ctx.clone(), tx, peer);
    let bind_deadline = tokio::time::Instant::now() + ctx.cfg.bind_timeout;
    let mut jobs = Vec::new();
    // After otpgw sent unbind (shutdown), the brand gets this long to answer.
    let mut unbind_deadline: Option<tokio::time::Instant> = None;
    // Slow-sender and idle defences: when the first bytes of an unfinished PDU
    // arrived, and when anything but a keepalive last arrived.
    let mut partial_since: Option<tokio::time::Instant> = None;
    let mut last_rx = tokio::time::Instant::now();
    let mut ever_bound = false;
    loop {
        if !ever_bound && c.brand.is_some() {
            ever_bound = true;
            ctx.ip_bound(peer.ip());
        }
        if rx.read_buffer().is_empty() {
            partial_since = None;
        } else if partial_since.is_none() {
            partial_since = Some(tokio::time::Instant::now());
        }
        let pdu_deadline = partial_since.map(|t| t + ctx.cfg.pdu_timeout);
        let idle_deadline = last_rx + ctx.cfg.idle_timeout;
        let (take, can_take, can_send) = c.receipt_flow();
        let outbox = c.outbox.clone();
        let timer = otpgw_core::clock::timer_at(c.session.next_deadline());
        let unbound = !c.session.state().is_bound() && c.session.state() != BindState::Unbinding;
        let end = tokio::select! {
            biased;
            _ = ctx.shutdown.cancelled(), if unbind_deadline.is_none() => {
                unbind_deadline = Some(tokio::time::Instant::now() + ctx.cfg.unbind_grace);
                c.start_unbind().await
            }
            _ = async {
                match unbind_deadline {
                    Some(d) => sleep_until(d).await,
                    None => std::future::pending().await,
                }
            } => Some(End::Closed),
            Some(done) = c.accepts.next(), if !c.accepts.is_empty() => {
                c.answer_submit(done).await
            }
            frame = rx.next() => match frame {
                None | Some(Err(_)) => Some(End::Closed),
                Some(Ok(Frame::Command(cmd))) => {
                    // Keepalives are not activity: a session that only exchanges
                    // enquire_link is idle.
                    if !matches!(u32::from(cmd.id()), cmd::ENQUIRE_LINK | cmd::ENQUIRE_LINK_RESP) {
                        last_rx = tokio::time::Instant::now();
                    }
                    c.on_command(*cmd).await
                }
                Some(Ok(Frame::Malformed(m))) => c.on_malformed(m).await,
            },
            _ = async {
                match outbox.as_ref() {
                    Some(o) => o.take_for(c.sid, take, &mut jobs).await,
                    None => std::future::pending().await,
                }
            }, if can_take => {
                c.mark_sent(&mut jobs);
                None
            }
            Some(ok) = c.marking.next(), if !c.marking.is_empty() => {
                c.marked(ok);
                None
            }
            _ = std::future::ready(()), if can_send => c.send_ready().await,
            _ = sleep_until(bind_deadline), if unbound => {
                metrics::counter!("otpgw_brand_bind_timeouts_total").increment(1);
                Some(End::Closed)
            }
            _ = async {
                match pdu_deadline {
                    Some(d) => sleep_until(d).await,
                    None => std::future::pending().await,
                }
            } => {
                metrics::counter!("otpgw_brand_slow_pdus_total").increment(1);
                tracing::info!(peer = %peer, "PDU not complete in time: connection closed");
                Some(End::Closed)
            }
            _ = sleep_until(idle_deadline), if !unbound => {
                metrics::counter!("otpgw_brand_idle_closed_total").increment(1);
                tracing::info!(peer = %peer, "idle session closed");
                Some(End::Closed)
            }
            _ = sleep_until(timer) => c.on_timers().await,
        };
        if let Some(e) = end {
            if matches!(e, End::Fatal) {
                metrics::counter!("otpgw_brand_sessions_killed_total").increment(1);
            }
            break;
        }
    }
    c.close();
    // Acceptances still under way finish (their messages must be queued once
    // stored), though nobody hears the answers.
    let rest = std::mem::take(&mut c.accepts);
    if !rest.is_empty() {
        tokio::spawn(rest.for_each(|_| async {}));
    }
    drop(c);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), writer).await;
    ever_bound
}

/// The `submit_sm_resp` (or `data_sm_resp`, `replace_sm_resp`,
/// `submit_multi_resp`) for an outcome.
fn reply(
    brand: &BrandConfig,
    ids: &IdCipher,
    res: Result<otpgw_core::MsgId, AcceptError>,
    req: Req,
    multi: Option<Box<otpgw_accept::multi::MultiOutcome>>,
) -> Command {
    match res {
        Ok(_) if req.resp == cmd::REPLACE_SM_RESP => {
            pdu::header_only(cmd::REPLACE_SM_RESP, status::ESME_ROK, req.seq)
        }
        Ok(id) if req.resp == cmd::SUBMIT_MULTI_RESP => {
            let (accepted, refused) = multi.map_or((1, Vec::new()), |m| (m.accepted, m.refused));
            for _ in 0..accepted {
                brand.count_accepted();
            }
            for (_, st) in &refused {
                metrics::counter!("otpgw_messages_rejected_total", "brand" => brand.system_id.to_string(), "status" => status::name(*st)).increment(1);
            }
            otpgw_proto::submit_multi::submit_multi_resp(
                req.seq,
                status::ESME_ROK,
                &ids.hide(id).to_string(),
                &refused,
            )
        }
        Ok(id) => {
            brand.count_accepted();
            let id = ids.hide(id).to_string();
            if req.resp == cmd::DATA_SM_RESP {
                otpgw_proto::data_sm::data_sm_resp(req.seq, &id)
            } else {
                pdu::submit_sm_resp(req.seq, &id)
            }
        }
        Err(e) => refusal(brand, e, req),
    }
}

fn refusal(brand: &BrandConfig, e: AcceptError, req: Req) -> Command {
    let st = e.status();
    metrics::counter!("otpgw_messages_rejected_total", "brand" => brand.system_id.to_string(), "status" => status::name(st)).increment(1);
    tracing::debug!(brand = %brand.system_id, reason = %e, status = st, "submit refused");
    pdu::header_only(req.resp, st, req.seq)
}

impl Conn {
    async fn send(&mut self, c: Command) -> Option<End> {
        self.tx.send(c).await.err().map(|_| End::Closed)
    }

    fn brand_label(&self) -> String {
        self.brand
            .as_ref()
            .map_or_else(|| "-".to_string(), |b| b.system_id.to_string())
    }

    async fn on_command(&mut self, c: Command) -> Option<End> {
        let id = u32::from(c.id());
        let seq = c.sequence_number();
        let now = now_ms();
        self.session.on_receive(now);
        if cmd::is_response(id) {
            return self.on_response(id, u32::from(c.status()), seq, now);
        }
        match admit(Role::Smsc, self.session.state(), id) {
            Admission::GenericNack => {
                return self
                    .send(pdu::header_only(
                        cmd::GENERIC_NACK,
                        status::ESME_RINVCMDID,
                        seq,
                    ))
                    .await;
            }
            Admission::Refuse(st) => {
                return self
                    .send(pdu::header_only(cmd::response_of(id), st, seq))
                    .await;
            }
            Admission::Allowed => {}
        }
        match id {
            cmd::BIND_TRANSMITTER | cmd::BIND_RECEIVER | cmd::BIND_TRANSCEIVER => {
                self.on_bind(&c, id, seq).await
            }
            cmd::SUBMIT_SM
            | cmd::DATA_SM
            | cmd::CANCEL_SM
            | cmd::QUERY_SM
            | cmd::REPLACE_SM
            | cmd::SUBMIT_MULTI => self.on_op(&c, id, seq).await,
            cmd::ENQUIRE_LINK => {
                self.send(pdu::header_only(cmd::ENQUIRE_LINK_RESP, 0, seq))
                    .await
            }
            cmd::UNBIND => {
                self.session.set_state(BindState::Unbinding);
                self.send(pdu::header_only(cmd::UNBIND_RESP, 0, seq)).await;
                Some(End::Closed)
            }
            _ => {
                self.send(pdu::header_only(
                    cmd::GENERIC_NACK,
                    status::ESME_RINVCMDID,
                    seq,
                ))
                .await
            }
        }
    }

    /// A submission (`submit_sm`, `data_sm`); `replacing`: its
    /// `replace_if_present_flag` is set.
    async fn on_submit(&mut self, fields: SubmitFields, req: Req, replacing: bool) -> Option<End> {
        let Some(brand) = self.brand.clone() else {
            return self
                .send(pdu::header_only(req.resp, status::ESME_RINVBNDSTS, req.seq))
                .await;
        };
        let started = Instant::now();
        if self.must_throttle() {
            return self
                .send(refusal(&brand, AcceptError::Throttled, req))
                .await;
        }
        let acceptor = self.ctx.acceptor.clone();
        let origin = self.origin(&brand);
        self.await_store(Box::pin(async move {
            let res = if replacing {
                acceptor
                    .accept_replacing(&brand, fields, origin, now_ms())
                    .await
            } else {
                acceptor.accept(&brand, fields, origin, now_ms()).await
            };
            (req, res, started, None)
        }))
        .await
    }

    /// The session a message of `brand` submitted here gets its receipt on (0: any).
    fn origin(&self, brand: &BrandConfig) -> u64 {
        if brand.receipts_to_submitter {
            self.sid
        } else {
            0
        }
    }

    /// Too many submits of this session wait for the store, or the brand's receipt
    /// outbox is full: slow its submits down (back-pressure) rather than drop its
    /// receipts.
    fn must_throttle(&self) -> bool {
        self.accepts.len() >= self.ctx.cfg.max_pending_submits
            || self.brand_outbox.as_ref().is_some_and(|o| o.is_full())
    }

    /// An acceptance (submission, replacement, submit_multi): with a store that
    /// answers at once (memory), reply inline; otherwise it waits for its group
    /// commit while this session keeps reading, and the response goes out when the
    /// message is safe.
    async fn await_store(&mut self, mut job: AcceptFuture) -> Option<End> {
        if let Some(done) = (&mut job).now_or_never() {
            return self.answer_submit(done).await;
        }
        self.accepts.push(job);
        None
    }

    /// Answer a submission whose acceptance ended.
    async fn answer_submit(&mut self, (req, res, started, multi): Accepted) -> Option<End> {
        let brand = self.brand.clone()?;
        let end = self
            .send(reply(&brand, self.ctx.acceptor.ids(), res, req, multi))
            .await;
        metrics::histogram!("otpgw_accept_latency_seconds").record(started.elapsed().as_secs_f64());
        end
    }

    fn on_response(&mut self, id: u32, st: u32, seq: u32, now: u64) -> Option<End> {
        match self.session.on_response(seq, now) {
            Some(Tag::Receipt(job)) => {
                if id == cmd::DELIVER_SM_RESP && st == status::ESME_ROK {
                    self.ctx.tracker.store().receipt_forwarded(job.id);
                    metrics::counter!("otpgw_receipts_forwarded_total", "brand" => self.brand_label()).increment(1);
                } else if matches!(st, status::ESME_RTHROTTLED | status::ESME_RMSGQFUL) {
                    // The brand asks us to slow down: not a refusal.
                    self.receipt_wait(job);
                } else {
                    self.receipt_refused(job);
                }
                None
            }
            Some(Tag::Unbind) => Some(End::Closed),
            None => None,
        }
    }

    async fn on_malformed(&mut self, m: Malformed) -> Option<End> {
        metrics::counter!("otpgw_brand_malformed_pdus_total").increment(1);
        let seq = m.sequence_number.unwrap_or(0);
        if m.is_fatal() {
            self.send(pdu::header_only(
                cmd::GENERIC_NACK,
                status::ESME_RINVCMDLEN,
                seq,
            ))
            .await;
            return Some(End::Fatal);
        }
        match m.command_id {
            Some(id @ (cmd::BIND_TRANSMITTER | cmd::BIND_RECEIVER | cmd::BIND_TRANSCEIVER)) => {
                // An over-long system_id or password is a bind failure like any other.
                if self.session.state() == BindState::Open {
                    self.bind_failed(id, seq, status::ESME_RBINDFAIL, "over-long field")
                        .await
                } else {
                    self.send(pdu::header_only(
                        cmd::response_of(id),
                        status::ESME_RALYBND,
                        seq,
                    ))
                    .await
                }
            }
            Some(id) if cmd::is_response(id) => {
                let st = m.command_status.unwrap_or(status::ESME_RSYSERR);
                self.on_response(id, st, seq, now_ms())
            }
            Some(id @ (cmd::SUBMIT_SM | cmd::ENQUIRE_LINK | cmd::UNBIND | cmd::QUERY_SM)) => {
                let st = match admit(Role::Smsc, self.session.state(), id) {
                    Admission::Refuse(st) => st,
                    _ => status::ESME_RINVCMDLEN,
                };
                self.send(pdu::header_only(cmd::response_of(id), st, seq))
                    .await
            }
            _ => {
                self.send(pdu::header_only(
                    cmd::GENERIC_NACK,
                    status::ESME_RINVCMDLEN,
                    seq,
                ))
                .await
            }
        }
    }

    async fn on_timers(&mut self) -> Option<End> {
        for t in self.session.poll(now_ms()) {
            match t {
                Timeout::Response {
                    tag: Tag::Receipt(job),
                    ..
                } => self.receipt_wait(job),
                Timeout::Response {
                    tag: Tag::Unbind, ..
                } => return Some(End::Closed),
                Timeout::SendEnquireLink { sequence_number } => {
                    if let Some(e) = self
                        .send(pdu::header_only(cmd::ENQUIRE_LINK, 0, sequence_number))
                        .await
                    {
                        return Some(e);
                    }
                }
                Timeout::LinkDead => return Some(End::Closed),
            }
        }
        None
    }

    async fn start_unbind(&mut self) -> Option<End> {
        if !self.session.state().is_bound() {
            return Some(End::Closed);
        }
        self.session.set_state(BindState::Unbinding);
        let seq = self.session.next_sequence();
        let _ = self.session.track(seq, Tag::Unbind, now_ms());
        self.send(pdu::header_only(cmd::UNBIND, 0, seq)).await
    }

    /// The connection ended: receipts in flight go back to the outbox.
    fn close(&mut self) {
        // Receipts waiting for their "sent" record go back first, then the ones
        // written and unanswered.
        let mut back: Vec<ReceiptJob> = self.ready.drain(..).collect();
        back.extend(self.marked.drain(..).flatten());
        for t in self.session.drain() {
            if let Tag::Receipt(j) = t {
                back.push(j);
            }
        }
        if let Some(o) = &self.brand_outbox {
            o.push_front(back);
            o.unregister(self.sid);
        }
        if self.outbox.is_some()
            && let Some(b) = &self.brand
        {
            self.ctx.tracker.store().brand_receiver(&b.system_id, false);
        }
        if let Some(b) = &self.brand {
            if let Some(mut n) = self.ctx.sessions.get_mut(&b.system_id) {
                *n = n.saturating_sub(1);
            }
            metrics::gauge!("otpgw_brand_sessions", "brand" => b.system_id.to_string())
                .decrement(1.0);
        }
    }
}
