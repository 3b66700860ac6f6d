//! The async driver of one carrier bind.
//!
//! Loop: connect, bind, serve until the link fails or shutdown, put every unanswered
//! submit back on the queue, wait (exponential backoff with jitter), reconnect.
//!
//! While bound it takes messages from the carrier's queue whenever the window has
//! room and writes them pipelined (never one at a time), matches `submit_sm_resp` by
//! sequence number, records the carrier's id, and matches receipts through the
//! carrier's [`crate::matcher::Matcher`]. A `deliver_sm` is acknowledged after its
//! receipt was recorded (the message finished and its brand receipt queued).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::net::TcpStream;
use tokio::time::{sleep_until, timeout};

use otpgw_core::Message;
use otpgw_core::clock::now_ms;
use otpgw_proto::codec::Frame;
use otpgw_proto::driver::{PduSender, reader, spawn_writer};
use otpgw_proto::pdu::{self, BindParams};
use otpgw_proto::session::{BindState, Session, SessionConfig, Timeout};
use otpgw_proto::status::{self, cmd};

use crate::CarrierState;
use crate::backoff::Backoff;

mod inbound;
mod send;

pub(crate) use inbound::apply_receipt;
use inbound::{answered, handle_command, handle_malformed};

/// What kind of bind this task keeps up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Transceiver,
    Transmitter,
    Receiver,
}

impl Kind {
    fn command_id(self) -> u32 {
        match self {
            Kind::Transceiver => cmd::BIND_TRANSCEIVER,
            Kind::Transmitter => cmd::BIND_TRANSMITTER,
            Kind::Receiver => cmd::BIND_RECEIVER,
        }
    }
    fn state(self) -> BindState {
        match self {
            Kind::Transceiver => BindState::Transceiver,
            Kind::Transmitter => BindState::Transmitter,
            Kind::Receiver => BindState::Receiver,
        }
    }
    fn label(self) -> &'static str {
        match self {
            Kind::Transceiver => "trx",
            Kind::Transmitter => "tx",
            Kind::Receiver => "rx",
        }
    }
}

/// Why a bind ended.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("connect timed out")]
    ConnectTimeout,
    #[error("TLS handshake with the carrier failed: {0}")]
    Tls(String),
    #[error("carrier refused the bind with status {0:#x}")]
    Refused(u32),
    #[error("no bind response in time")]
    BindTimeout,
    #[error("connection closed by carrier")]
    Closed,
    #[error("io: {0}")]
    Io(String),
    #[error("enquire_link unanswered: link dead")]
    LinkDead,
    #[error("carrier unbound")]
    Unbound,
    #[error("unframeable input from carrier")]
    Unframeable,
    #[error("writer gone")]
    WriterGone,
    #[error("bind slot shared with other nodes lost")]
    SlotLost,
}

/// What the window remembers of each request.
#[derive(Debug)]
enum Tag {
    /// A message, or with `part` one part of a long message (its body with UDH).
    Submit {
        msg: Arc<Message>,
        sent: Instant,
        part: Option<bytes::Bytes>,
    },
    Unbind,
}

/// What to send again when a submit failed: the message, or for a part of a long
/// message only that part (same UDH, so the phone still joins it to the others).
fn resend_unit(msg: Arc<Message>, part: Option<bytes::Bytes>) -> Arc<Message> {
    match part {
        None => msg,
        Some(body) => {
            let Some(mut fields) = msg.sms_fields() else {
                return msg;
            };
            fields.short_message = body;
            fields.message_payload = None;
            fields.esm_class |= otpgw_proto::split::UDHI;
            Arc::new(msg.part(fields))
        }
    }
}

/// Run one bind until shutdown.
pub async fn run(shared: Arc<CarrierState>, index: usize, kind: Kind) {
    let mut backoff = Backoff::new(shared.cfg.reconnect_min, shared.cfg.reconnect_max);
    let carrier = shared.cfg.name.clone();
    while !shared.shutdown.is_cancelled() {
        let mut was_bound = false;
        let slots = match (&shared.cfg.bind_slots, shared.cfg.max_binds_total) {
            (Some(b), Some(total)) => Some((b.clone(), total)),
            _ => None,
        };
        if let Some((b, total)) = &slots
            && !wait_for_slot(&shared, b.as_ref(), *total, index).await
        {
            break;
        }
        let res = match &slots {
            None => connect_and_serve(&shared, kind, &mut was_bound).await,
            Some((b, total)) => {
                let res = tokio::select! {
                    r = connect_and_serve(&shared, kind, &mut was_bound) => r,
                    () = keep_slot(&shared, b.as_ref(), *total, index) => Err(BindError::SlotLost),
                };
                let _ = b.release(&carrier, index).await;
                res
            }
        };
        if was_bound {
            backoff.reset();
        }
        match res {
            Ok(()) => tracing::info!(%carrier, bind = index, kind = kind.label(), "bind closed"),
            Err(e) => {
                metrics::counter!("otpgw_carrier_bind_failures_total", "carrier" => carrier.clone())
                    .increment(1);
                tracing::warn!(%carrier, bind = index, kind = kind.label(), error = %e, "bind lost")
            }
        }
        if shared.shutdown.is_cancelled() {
            break;
        }
        let delay = backoff.next_delay();
        tokio::select! {
            _ = shared.shutdown.cancelled() => break,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// Keeps the carrier's window-in-flight count true for this bind, also when the
/// bind ends early.
struct InFlight<'a> {
    shared: &'a CarrierState,
    counted: usize,
}
impl InFlight<'_> {
    fn update(&mut self, now: usize) {
        self.shared.window_moved(self.counted, now);
        self.counted = now;
    }
}
impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.shared.window_moved(self.counted, 0);
    }
}

struct BoundGuard<'a>(&'a CarrierState);
impl Drop for BoundGuard<'_> {
    fn drop(&mut self) {
        if self
            .0
            .bound
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed)
            == 1
        {
            // The last bind went down: route new messages elsewhere at once.
            self.0.refresh_available();
        }
        metrics::gauge!("otpgw_carrier_binds_up", "carrier" => self.0.cfg.name.clone())
            .decrement(1.0);
    }
}

async fn connect_and_serve(
    shared: &Arc<CarrierState>,
    kind: Kind,
    was_bound: &mut bool,
) -> Result<(), BindError> {
    let cfg = &shared.cfg;
    let stream = timeout(cfg.connect_timeout, TcpStream::connect(&cfg.address))
        .await
        .map_err(|_| BindError::ConnectTimeout)?
        .map_err(BindError::Connect)?;
    let _ = stream.set_nodelay(true);
    match &cfg.tls {
        None => {
            let (rd, wr) = stream.into_split();
            bind_and_serve(shared, kind, was_bound, rd, wr).await
        }
        Some(tls) => {
            let tls_stream = handshake(shared, tls, stream).await?;
            let (rd, wr) = tokio::io::split(tls_stream);
            bind_and_serve(shared, kind, was_bound, rd, wr).await
        }
    }
}

/// The TLS handshake of a bind (within the connect timeout). A failure (a
/// certificate refused either way, no common protocol) fails the bind like a
/// refused password: counted, logged naming TLS, retried with the usual backoff.
async fn handshake(
    shared: &Arc<CarrierState>,
    tls: &crate::config::CarrierTls,
    stream: TcpStream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, BindError> {
    use tokio_rustls::rustls::pki_types::ServerName;
    let cfg = &shared.cfg;
    let failed = |why: String| {
        metrics::counter!("otpgw_carrier_tls_handshake_failures_total", "carrier" => cfg.name.clone())
            .increment(1);
        BindError::Tls(why)
    };
    let name = ServerName::try_from(tls.server_name.clone())
        .map_err(|e| failed(format!("server name {:?}: {e}", tls.server_name)))?;
    let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
    timeout(cfg.connect_timeout, connector.connect(name, stream))
        .await
        .map_err(|_| failed("timed out".into()))?
        .map_err(|e| failed(e.to_string()))
}

/// Bind over an established connection (plain or TLS) and serve until it ends.
async fn bind_and_serve<R, W>(
    shared: &Arc<CarrierState>,
    kind: Kind,
    was_bound: &mut bool,
    rd: R,
    wr: W,
) -> Result<(), BindError>
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
    W: tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let cfg = &shared.cfg;
    let mut rx = reader(rd, cfg.max_frame);
    let (tx, _stats, writer) = spawn_writer(wr, cfg.window.max(16) * 2);
    let scfg = SessionConfig {
        window: cfg.window.max(1),
        response_timeout: cfg.response_timeout,
        enquire_link_interval: cfg.enquire_link_interval,
        enquire_link_timeout: cfg.enquire_link_timeout,
    };
    let mut session: Session<Tag> = Session::new(scfg, now_ms());

    // Bind.
    let params = BindParams {
        system_id: cfg.system_id.clone(),
        password: cfg.password.clone(),
        system_type: cfg.system_type.clone(),
    };
    let seq = session.next_sequence();
    let bind = pdu::bind(kind.command_id(), seq, &params).map_err(|_| BindError::Refused(0))?;
    tx.send(bind).await.map_err(|_| BindError::WriterGone)?;
    let resp = timeout(cfg.response_timeout, async {
        loop {
            match rx.next().await {
                Some(Ok(Frame::Command(c))) if c.sequence_number() == seq => return Ok(c),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(BindError::Io(e.to_string())),
                None => return Err(BindError::Closed),
            }
        }
    })
    .await
    .map_err(|_| BindError::BindTimeout)??;
    let st = u32::from(resp.status());
    if st != status::ESME_ROK || u32::from(resp.id()) != cmd::response_of(kind.command_id()) {
        return Err(BindError::Refused(st));
    }
    session.set_state(kind.state());
    *was_bound = true;
    shared
        .bound
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    shared.refresh_available();
    metrics::gauge!("otpgw_carrier_binds_up", "carrier" => cfg.name.clone()).increment(1.0);
    let _guard = BoundGuard(shared);
    tracing::info!(carrier = %cfg.name, kind = kind.label(), "bound");

    let res = serve(shared, kind, &mut session, &mut rx, &tx).await;

    // Whatever is still unanswered may or may not have reached the carrier: resend
    // it or finish it, by the carrier's policy for unanswered submits.
    let mut unanswered = 0usize;
    for tag in session.drain() {
        if let Tag::Submit { msg, part, .. } = tag {
            unanswered += 1;
            shared.unanswered(resend_unit(msg, part));
        }
    }
    if unanswered > 0 {
        answered(shared, unanswered);
    }
    drop(tx);
    let _ = timeout(Duration::from_secs(1), writer).await;
    res
}

async fn serve<R>(
    shared: &Arc<CarrierState>,
    kind: Kind,
    session: &mut Session<Tag>,
    rx: &mut R,
    tx: &PduSender,
) -> Result<(), BindError>
where
    R: futures_util::Stream<Item = Result<Frame, otpgw_proto::codec::CodecError>> + Unpin,
{
    let mut out: Vec<Arc<Message>> = Vec::with_capacity(shared.cfg.window);
    let mut expired = Vec::new();
    let mut unbinding = false;
    // Set on shutdown: take no more messages, unbind once the window drained or at this instant.
    let mut drain_until: Option<tokio::time::Instant> = None;
    let mut gauge = InFlight { shared, counted: 0 };
    // Set when the carrier's rate allows nothing now: no taking until this instant.
    let mut rate_wait: Option<tokio::time::Instant> = None;
    loop {
        gauge.update(session.in_flight());
        if let Some(d) = drain_until
            && !unbinding
            && (session.in_flight() == 0 || tokio::time::Instant::now() >= d)
        {
            unbinding = true;
            let seq = session.next_sequence();
            session.set_state(BindState::Unbinding);
            let _ = session.track(seq, Tag::Unbind, now_ms());
            tx.send(pdu::header_only(cmd::UNBIND, 0, seq))
                .await
                .map_err(|_| BindError::WriterGone)?;
        }
        session.set_window(shared.window());
        let paused = shared.is_paused();
        let rate_ok = rate_wait.is_none_or(|t| tokio::time::Instant::now() >= t);
        if rate_ok {
            rate_wait = None;
        }
        let can_send = kind != Kind::Receiver
            && drain_until.is_none()
            && !paused
            && rate_ok
            && session.room() > 0;
        let room = session.room();
        let mut deadline = otpgw_core::clock::timer_at(session.next_deadline());
        if let Some(d) = drain_until
            && !unbinding
        {
            deadline = deadline.min(d);
        }
        tokio::select! {
            biased;
            _ = shared.shutdown.cancelled(), if drain_until.is_none() => {
                drain_until = Some(tokio::time::Instant::now() + shared.cfg.drain_grace);
            }
            // While paused, look again for a resume every 100 ms.
            _ = tokio::time::sleep(Duration::from_millis(100)), if paused => {}
            _ = async {
                match rate_wait {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            }, if rate_wait.is_some() => {}
            frame = rx.next() => {
                match frame {
                    None => return if unbinding { Ok(()) } else { Err(BindError::Closed) },
                    Some(Err(e)) => return Err(BindError::Io(e.to_string())),
                    Some(Ok(Frame::Command(c))) => {
                        if handle_command(shared, session, tx, *c).await? {
                            return Ok(());
                        }
                    }
                    Some(Ok(Frame::Malformed(m))) => handle_malformed(shared, session, tx, m).await?,
                }
            }
            _ = shared.queue.pop(room, now_ms, &mut out, &mut expired), if can_send => {
                shared.finish_expired(&mut expired);
                send::batch(shared, session, tx, &mut out, &mut rate_wait).await?;
            }
            _ = sleep_until(deadline) => {
                for t in session.poll(now_ms()) {
                    match t {
                        Timeout::Response { tag: Tag::Submit { msg, part, .. }, .. } => {
                            metrics::counter!("otpgw_carrier_response_timeouts_total", "carrier" => shared.cfg.name.clone()).increment(1);
                            shared.unanswered(resend_unit(msg, part));
                            answered(shared, 1);
                        }
                        Timeout::Response { tag: Tag::Unbind, .. } => return Ok(()),
                        Timeout::SendEnquireLink { sequence_number } => {
                            tx.send(pdu::header_only(cmd::ENQUIRE_LINK, 0, sequence_number)).await.map_err(|_| BindError::WriterGone)?;
                        }
                        Timeout::LinkDead => return Err(BindError::LinkDead),
                    }
                }
            }
        }
    }
}

/// Wait until this bind holds one of the carrier's bind slots shared by all nodes;
/// `false` on shutdown.
async fn wait_for_slot(
    shared: &CarrierState,
    slots: &dyn otpgw_core::shared_limit::BindSlots,
    total: usize,
    index: usize,
) -> bool {
    let mut logged = false;
    loop {
        match slots.hold(&shared.cfg.name, total, index).await {
            Ok(true) => return true,
            Ok(false) if !logged => {
                tracing::info!(carrier = %shared.cfg.name, bind = index, total, "every bind slot of the carrier is held by other nodes: waiting");
                logged = true;
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(carrier = %shared.cfg.name, error = %e, "cannot reach the shared bind slots")
            }
        }
        tokio::select! {
            _ = shared.shutdown.cancelled() => return false,
            _ = tokio::time::sleep(slots.renew_every()) => {}
        }
    }
}

/// Renew the slot while the bind runs; returns when it was lost (another node took
/// it after this node failed to renew in time). While the shared state cannot be
/// reached the bind stays up.
async fn keep_slot(
    shared: &CarrierState,
    slots: &dyn otpgw_core::shared_limit::BindSlots,
    total: usize,
    index: usize,
) {
    loop {
        tokio::time::sleep(slots.renew_every()).await;
        match slots.hold(&shared.cfg.name, total, index).await {
            Ok(true) | Err(_) => {}
            Ok(false) => {
                tracing::warn!(carrier = %shared.cfg.name, bind = index, "bind slot lost: closing the bind");
                return;
            }
        }
    }
}
