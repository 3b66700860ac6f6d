//! Property tests of the brand server against hostile input over real sockets: one
//! gateway, many connections. Each case either mutates a valid `submit_sm` of a bound
//! session (bit flips anywhere after the length field, so the frame stays isolable)
//! or sends an arbitrary byte stream (random, or a valid PDU truncated). Afterwards:
//!
//! - an isolable frame, whatever it became, never kills the session: the next
//!   well-formed PDU (an enquire_link) is answered, unless the frame became an
//!   unbind (then the session ends cleanly);
//! - an arbitrary stream ends in a defined state: the session answers, or closes
//!   when the client closes, within a time limit; it never hangs;
//! - nothing a peer sends panics a task or stalls others: alongside the cases, a
//!   normal brand gets its messages through.
//!
//! Cases run in CI: `OTPGW_HOSTILE_CASES` (default 256) for each of the two
//! properties.

use crate::common;

use std::sync::OnceLock;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use proptest::prelude::*;
use tokio::io::AsyncWriteExt;

use common::Raw;
use otpgw_node::Gateway;
use otpgw_proto::codec::{Frame, encode_command};
use otpgw_proto::pdu::{self, SubmitFields};
use otpgw_proto::rusmpp::{Command, CommandStatus};
use otpgw_proto::status::{self, cmd};
use otpgw_sim::loadgen::{self, LoadConfig};

struct World {
    rt: tokio::runtime::Runtime,
    gw: Gateway,
    _sim: otpgw_sim::SimHandle,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (gw, sim) = rt.block_on(async {
            let sim = common::sim(|_| {}).await;
            let text = common::config_text("127.0.0.1:0", &[("sim", sim.addr())], "").replace(
                "shutdown_grace_secs = 2\n",
                "shutdown_grace_secs = 2\nmax_unbound_per_ip = 100\nmax_connections_per_ip = 1000\n",
            );
            let text = text.replace("system_id = \"bank\"\n", "system_id = \"bank\"\nmax_binds = 1000\n");
            let gw = common::start(&text).await;
            assert!(gw.wait_bound(2, Duration::from_secs(10)).await);
            (gw, sim)
        });
        World { rt, gw, _sim: sim }
    })
}

fn cases() -> u32 {
    std::env::var("OTPGW_HOSTILE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

fn submit_bytes(seq: u32) -> BytesMut {
    let f = SubmitFields {
        registered_delivery: 0,
        short_message: Bytes::from_static(b"Your code is 123456"),
        ..otpgw_testkit::sample::fields("BANK", "447400900123")
    };
    let mut b = BytesMut::new();
    encode_command(
        &Command::new(CommandStatus::EsmeRok, seq, f.to_submit_sm().unwrap()),
        &mut b,
    );
    b
}

const PROBE_SEQ: u32 = 0x7FFF_FFF0;

/// Read until the probe's enquire_link_resp (true) or the connection closes (false).
async fn probe_answered(c: &mut Raw) -> Option<bool> {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match c.rd.next().await {
                Some(Ok(Frame::Command(r)))
                    if u32::from(r.id()) == cmd::ENQUIRE_LINK_RESP
                        && r.sequence_number() == PROBE_SEQ =>
                {
                    return true;
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return false,
            }
        }
    })
    .await
    .ok()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn isolable_mutations_never_kill_the_session(
        flips in proptest::collection::vec((4usize..64, 0u8..8), 1..6),
    ) {
        let w = world();
        let answered = w.rt.block_on(async {
            let mut c = Raw::connect(w.gw.brand_addr()).await;
            let (_, st, _) = c.bind(cmd::BIND_TRANSCEIVER, "bank", "pw1", 1).await;
            assert_eq!(st, status::ESME_ROK);
            let mut b = submit_bytes(2);
            let len = b.len();
            for (pos, bit) in &flips {
                b[4 + (pos - 4) % (len - 4)] ^= 1 << bit;
            }
            let id = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
            c.send_raw(&b).await;
            c.send(&pdu::header_only(cmd::ENQUIRE_LINK, 0, PROBE_SEQ)).await;
            (probe_answered(&mut c).await, id)
        });
        match answered {
            (Some(true), _) => {}
            (Some(false), id) => prop_assert_eq!(id, cmd::UNBIND, "session ended on command {:#x}", id),
            (None, id) => prop_assert!(false, "no answer and no close (command {:#x})", id),
        }
    }

    #[test]
    fn arbitrary_streams_end_in_a_defined_state(
        random in proptest::collection::vec(any::<u8>(), 0..600),
        cut in 1usize..200,
        truncated in any::<bool>(),
    ) {
        let w = world();
        let ended = w.rt.block_on(async {
            let mut c = Raw::connect(w.gw.brand_addr()).await;
            let bytes: Vec<u8> = if truncated {
                let b = submit_bytes(1);
                b[..cut.min(b.len() - 1)].to_vec()
            } else {
                random
            };
            c.send_raw(&bytes).await;
            c.send(&pdu::header_only(cmd::ENQUIRE_LINK, 0, PROBE_SEQ)).await;
            // Answered, or (when the probe was swallowed by an unfinished frame)
            // closed once the client closes its side.
            match tokio::time::timeout(Duration::from_millis(200), probe_answered(&mut c)).await {
                Ok(Some(_)) => true,
                _ => {
                    let _ = c.wr.shutdown().await;
                    tokio::time::timeout(Duration::from_secs(3), async {
                        while let Some(Ok(_)) = c.rd.next().await {}
                    })
                    .await
                    .is_ok()
                }
            }
        });
        prop_assert!(ended, "the session neither answered nor closed");
    }
}

/// Alongside the hostile cases (same binary, same gateway, run in parallel), a normal
/// brand gets everything through: no task died holding something others need.
#[test]
fn the_gateway_still_serves_normal_traffic() {
    let w = world();
    let report = w.rt.block_on(async {
        let mut lc = LoadConfig::new(w.gw.brand_addr(), "shop", "pw2", 2_000);
        lc.receipt_timeout = Duration::from_secs(10);
        loadgen::run(lc).await.unwrap()
    });
    assert_eq!(report.accepted, 2_000);
    assert_eq!(report.receipts, 2_000);
}
