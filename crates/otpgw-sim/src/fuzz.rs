//! A live-server fuzzer: bound brand sessions that stream mutated PDUs at an SMPP
//! server over real sockets and check that every batch ends in a defined state.
//!
//! Each session binds as a brand, then sends batches of PDUs made from valid
//! templates (submit_sm with and without TLVs, query_sm, cancel_sm, enquire_link,
//! deliver_sm_resp, generic_nack, a bind) by one mutation each: bit flips after the
//! length field, a random body, a random command id, a truncated or extended body
//! with the length fixed up, and now and then a `command_length` that lies (the
//! stream can no longer be framed; that PDU ends its batch). After each batch comes
//! a probe (`enquire_link` with a marked sequence number). The batch is settled when:
//!
//! - the probe is answered (the session survived everything), or
//! - the server closes the session (an unbind, a fatal frame or a defence), or
//! - after a lying length swallowed the probe, the server closes once the fuzzer
//!   closes its side.
//!
//! Anything else within the time limit is a hang, and the run reports it. Receipts
//! the server sends (a mutation can still be a valid submit) are answered. The
//! generator is seeded, so a failing run can be repeated.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use parking_lot::Mutex;
use rand::{Rng as _, SeedableRng};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::codec::FramedRead;

use otpgw_proto::codec::{Frame, SmppCodec, encode_command};
use otpgw_proto::pdu::{self, BindParams, SubmitFields};
use otpgw_proto::rusmpp::{Command, CommandStatus};
use otpgw_proto::status::cmd;

/// What to fuzz and how much.
#[derive(Debug, Clone)]
pub struct FuzzConfig {
    pub addr: SocketAddr,
    pub system_id: String,
    pub password: String,
    /// Mutated PDUs to send in all (probes and binds not counted).
    pub pdus: u64,
    /// Sessions at once.
    pub sessions: usize,
    /// PDUs per batch (before each probe).
    pub batch: usize,
    pub seed: u64,
    /// How long a batch may take to settle before it counts as a hang.
    pub settle: Duration,
}

impl FuzzConfig {
    pub fn new(addr: SocketAddr, system_id: &str, password: &str, pdus: u64) -> Self {
        Self {
            addr,
            system_id: system_id.into(),
            password: password.into(),
            pdus,
            sessions: 4,
            batch: 200,
            seed: 1,
            settle: Duration::from_secs(10),
        }
    }
}

/// What happened.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct FuzzReport {
    pub pdus_sent: u64,
    pub batches: u64,
    /// Batches whose probe was answered.
    pub probes_answered: u64,
    /// Sessions the server ended (unbind, fatal frame, defence).
    pub closed_by_server: u64,
    /// Batches ended by a lying length, then closed when the fuzzer closed.
    pub desynced_then_closed: u64,
    /// Batches that neither answered nor closed in time: must be 0.
    pub hangs: u64,
    /// Binds that failed (the server refused or was unreachable).
    pub bind_failures: u64,
    /// Answers by command status (hex), all commands together.
    pub statuses: BTreeMap<String, u64>,
    /// Receipts and other deliver_sm the server sent (answered).
    pub deliver_sm: u64,
    pub seconds: f64,
}

/// The seeded generator that picks mutations (a run can be repeated).
type Rng = rand::rngs::StdRng;

/// A draw in `0..n` (0 when `n` is 0).
fn below(rng: &mut Rng, n: u64) -> u64 {
    rng.random_range(0..n.max(1))
}

const PROBE_SEQ: u32 = 0x7FFF_FFF0;
const CANCEL_SM: u32 = 0x0000_0008;
const MAX_FRAME: u32 = 4096;

fn header(id: u32, seq: u32, body: &[u8]) -> BytesMut {
    let mut b = BytesMut::with_capacity(16 + body.len());
    b.put_u32(16 + body.len() as u32);
    b.put_u32(id);
    b.put_u32(0);
    b.put_u32(seq);
    b.put_slice(body);
    b
}

/// The valid PDUs mutations start from.
fn templates() -> Vec<BytesMut> {
    let mut out = Vec::new();
    let base = SubmitFields {
        source: pdu::Address {
            ton: 5,
            npi: 0,
            addr: "BANK".into(),
        },
        dest: pdu::Address {
            ton: 1,
            npi: 1,
            addr: "447400900123".into(),
        },
        registered_delivery: 1,
        short_message: Bytes::from_static(b"code 0000000000 fuzz"),
        ..Default::default()
    };
    for f in [
        base.clone(),
        SubmitFields {
            data_coding: 8,
            short_message: Bytes::from_static(&[0, 0x41, 0, 0x42, 0xD8, 0x3D, 0xDE, 0x00]),
            ..base.clone()
        },
        SubmitFields {
            esm_class: 0x40,
            short_message: Bytes::from_static(&[5, 0, 3, 7, 2, 1, b'h', b'i']),
            ..base
        },
    ] {
        if let Ok(s) = f.to_submit_sm() {
            let mut b = BytesMut::new();
            encode_command(&Command::new(CommandStatus::EsmeRok, 1, s), &mut b);
            out.push(b);
        }
    }
    // submit_sm with a message_payload TLV (0x0424) and an empty short_message.
    let mut body = Vec::new();
    body.extend_from_slice(b"\0\x05\0BANK\0\x01\x01447400900123\0");
    body.extend_from_slice(&[0, 0, 0]); // esm_class, protocol_id, priority
    body.extend_from_slice(b"\0\0"); // schedule, validity
    body.extend_from_slice(&[1, 0, 0, 0, 0]); // registered, replace, dcs, default id, sm_length
    body.extend_from_slice(&[0x04, 0x24, 0, 12]);
    body.extend_from_slice(b"code payload");
    out.push(header(cmd::SUBMIT_SM, 1, &body));
    out.push(header(cmd::QUERY_SM, 1, b"0123456789abcdef\0\x05\0BANK\0"));
    out.push(header(
        CANCEL_SM,
        1,
        b"\x000123456789abcdef\0\x05\0BANK\0\x01\x01447400900123\0",
    ));
    out.push(header(cmd::ENQUIRE_LINK, 1, b""));
    out.push(header(cmd::DELIVER_SM_RESP, 1, b"\0"));
    out.push(header(cmd::GENERIC_NACK, 1, b""));
    let p = BindParams {
        system_id: "bank".into(),
        password: "x".into(),
        system_type: String::new(),
    };
    if let Ok(c) = pdu::bind(cmd::BIND_TRANSCEIVER, 1, &p) {
        let mut b = BytesMut::new();
        encode_command(&c, &mut b);
        out.push(b);
    }
    out
}

/// One mutated PDU; `true` when its length field lies (the stream is lost after it).
fn mutate(rng: &mut Rng, t: &[u8], seq: u32) -> (BytesMut, bool) {
    let mut b = BytesMut::from(t);
    b[12..16].copy_from_slice(&seq.to_be_bytes());
    let fix_len = |b: &mut BytesMut| {
        let n = b.len() as u32;
        b[0..4].copy_from_slice(&n.to_be_bytes());
    };
    // One PDU in a thousand lies about its length (it ends its session's batch);
    // the others frame exactly.
    if below(rng, 1000) == 0 {
        let len = match below(rng, 3) {
            0 => below(rng, 16) as u32,
            1 => MAX_FRAME + 1 + below(rng, 100_000) as u32,
            _ => (b.len() as u32 + 1 + below(rng, 64) as u32).min(MAX_FRAME),
        };
        b[0..4].copy_from_slice(&len.to_be_bytes());
        return (b, true);
    }
    match below(rng, 100) {
        0..50 => {
            for _ in 0..1 + below(rng, 6) {
                let pos = 4 + below(rng, b.len() as u64 - 4) as usize;
                b[pos] ^= 1 << below(rng, 8);
            }
        }
        50..65 => {
            let n = below(rng, 120) as usize;
            b.truncate(16);
            for _ in 0..n {
                b.put_u8(rng.random::<u8>());
            }
            fix_len(&mut b);
        }
        65..75 => {
            let id = match below(rng, 3) {
                0 => rng.random::<u32>(),
                1 => 0x8000_0000 | below(rng, 0x120) as u32,
                _ => below(rng, 0x120) as u32,
            };
            b[4..8].copy_from_slice(&id.to_be_bytes());
        }
        75..85 => {
            let keep = 16 + below(rng, b.len() as u64 - 16) as usize;
            b.truncate(keep);
            fix_len(&mut b);
        }
        _ => {
            for _ in 0..1 + below(rng, 40) {
                b.put_u8(rng.random::<u8>());
            }
            fix_len(&mut b);
        }
    }
    (b, false)
}

struct Session {
    rd: FramedRead<tokio::net::tcp::OwnedReadHalf, SmppCodec>,
    wr: tokio::net::tcp::OwnedWriteHalf,
}

async fn bind(cfg: &FuzzConfig) -> Option<Session> {
    let s = TcpStream::connect(cfg.addr).await.ok()?;
    let _ = s.set_nodelay(true);
    let (r, mut wr) = s.into_split();
    let mut rd = FramedRead::new(r, SmppCodec::new(65_536));
    let p = BindParams {
        system_id: cfg.system_id.clone(),
        password: cfg.password.clone(),
        system_type: String::new(),
    };
    let mut b = BytesMut::new();
    encode_command(&pdu::bind(cmd::BIND_TRANSCEIVER, 1, &p).ok()?, &mut b);
    wr.write_all(&b).await.ok()?;
    let resp = tokio::time::timeout(Duration::from_secs(5), rd.next())
        .await
        .ok()??
        .ok()?;
    match resp {
        Frame::Command(c) if u32::from(c.status()) == 0 => Some(Session { rd, wr }),
        _ => None,
    }
}

#[derive(Default)]
struct Tally {
    statuses: BTreeMap<u32, u64>,
    deliver_sm: u64,
}

enum Settled {
    Answered,
    Closed,
    Hang,
}

/// Read until the probe's answer or the end of the stream, answering deliver_sm.
async fn settle(s: &mut Session, tally: &mut Tally, limit: Duration) -> Settled {
    let r = tokio::time::timeout(limit, async {
        loop {
            match s.rd.next().await {
                Some(Ok(Frame::Command(c))) => {
                    let id = u32::from(c.id());
                    if id == cmd::DELIVER_SM {
                        tally.deliver_sm += 1;
                        let mut b = BytesMut::new();
                        encode_command(&pdu::deliver_sm_resp(c.sequence_number(), 0), &mut b);
                        if s.wr.write_all(&b).await.is_err() {
                            return Settled::Closed;
                        }
                        continue;
                    }
                    *tally.statuses.entry(u32::from(c.status())).or_default() += 1;
                    if id == cmd::ENQUIRE_LINK_RESP && c.sequence_number() == PROBE_SEQ {
                        return Settled::Answered;
                    }
                }
                Some(Ok(Frame::Malformed(_))) => continue,
                Some(Err(_)) | None => return Settled::Closed,
            }
        }
    })
    .await;
    r.unwrap_or(Settled::Hang)
}

/// Run the fuzzer; the report says how every batch ended.
pub async fn run(cfg: FuzzConfig) -> FuzzReport {
    let start = Instant::now();
    let left = Arc::new(AtomicU64::new(cfg.pdus));
    let report = Arc::new(Mutex::new(FuzzReport::default()));
    let mut tasks = Vec::new();
    for k in 0..cfg.sessions.max(1) {
        let (cfg, left, report) = (cfg.clone(), left.clone(), report.clone());
        tasks.push(tokio::spawn(async move {
            worker(cfg.clone(), k as u64, left, report).await;
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let mut r = std::mem::take(&mut *report.lock());
    r.seconds = start.elapsed().as_secs_f64();
    r
}

async fn worker(cfg: FuzzConfig, k: u64, left: Arc<AtomicU64>, report: Arc<Mutex<FuzzReport>>) {
    let mut rng = Rng::seed_from_u64(cfg.seed.wrapping_add(k.wrapping_mul(0x1000_0001)));
    let templates = templates();
    let mut session: Option<Session> = None;
    let mut seq = 2u32;
    let mut failures_in_a_row = 0;
    loop {
        let want = cfg.batch as u64;
        let got = left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| {
                (l > 0).then(|| l.saturating_sub(want))
            })
            .map_or(0, |l| l.min(want));
        if got == 0 {
            return;
        }
        let s = match session.as_mut() {
            Some(s) => s,
            None => match bind(&cfg).await {
                Some(s) => {
                    failures_in_a_row = 0;
                    session.insert(s)
                }
                None => {
                    report.lock().bind_failures += 1;
                    failures_in_a_row += 1;
                    if failures_in_a_row > 50 {
                        return;
                    }
                    left.fetch_add(got, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let mut buf = BytesMut::new();
        let mut lied = false;
        let mut sent = 0;
        for _ in 0..got {
            let t = &templates[below(&mut rng, templates.len() as u64) as usize];
            seq = if seq >= 0x7FFF_0000 { 2 } else { seq + 1 };
            let (b, lie) = mutate(&mut rng, t, seq);
            buf.extend_from_slice(&b);
            sent += 1;
            if lie {
                lied = true;
                break;
            }
        }
        let mut probe = BytesMut::new();
        encode_command(
            &pdu::header_only(cmd::ENQUIRE_LINK, 0, PROBE_SEQ),
            &mut probe,
        );
        buf.extend_from_slice(&probe);
        // Unsent PDUs of a batch cut short by a lie go back to the pool.
        left.fetch_add(got - sent, Ordering::Relaxed);
        let mut tally = Tally::default();
        let wrote = s.wr.write_all(&buf).await.is_ok();
        let limit = if lied {
            Duration::from_millis(500)
        } else {
            cfg.settle
        };
        let outcome = if wrote {
            settle(s, &mut tally, limit).await
        } else {
            Settled::Closed
        };
        let outcome = match (outcome, lied) {
            (Settled::Hang, true) => {
                // The probe went into a frame that never ends: close our side and
                // expect the server to close its own.
                let _ = s.wr.shutdown().await;
                match settle(s, &mut tally, cfg.settle).await {
                    Settled::Closed => {
                        report.lock().desynced_then_closed += 1;
                        session = None;
                        Settled::Closed
                    }
                    other => other,
                }
            }
            (o, _) => o,
        };
        let mut r = report.lock();
        r.pdus_sent += sent;
        r.batches += 1;
        r.deliver_sm += tally.deliver_sm;
        for (st, n) in tally.statuses {
            *r.statuses.entry(format!("{st:#010x}")).or_default() += n;
        }
        match outcome {
            Settled::Answered if !lied => r.probes_answered += 1,
            Settled::Answered => {
                // A lying length the server skipped (too long) or that happened to
                // end at the probe: the session lives on, but resync by rebinding.
                r.probes_answered += 1;
                session = None;
            }
            Settled::Closed => {
                if session.is_some() {
                    r.closed_by_server += 1;
                }
                session = None;
            }
            Settled::Hang => {
                r.hangs += 1;
                session = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_keep_a_header_and_say_when_they_lie() {
        let mut rng = Rng::seed_from_u64(7);
        let ts = templates();
        assert!(ts.len() >= 9);
        let (mut lies, mut honest) = (0, 0);
        for i in 0..10_000 {
            let t = &ts[i % ts.len()];
            let (b, lie) = mutate(&mut rng, t, 5);
            assert!(b.len() >= 16);
            let len = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
            if lie {
                lies += 1;
            } else {
                honest += 1;
                assert_eq!(len, b.len(), "an honest mutation frames exactly");
            }
        }
        assert!(lies > 2 && lies < 40 && honest > 9_900, "{lies} {honest}");
    }
}
