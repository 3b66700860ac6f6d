//! The carrier side under faults: connections dropped mid-run, a carrier capping its
//! rate, and a carrier that sends receipts rusmpp cannot decode.

use crate::common;

use common::index_of;

use std::collections::HashSet;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio_util::codec::FramedRead;

use otpgw_proto::codec::{Frame, SmppCodec, encode_command};
use otpgw_proto::pdu;
use otpgw_proto::rusmpp::Pdu;
use otpgw_proto::status::cmd;
use otpgw_sim::loadgen::{self, LoadConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binds_dropped_mid_run_reconnect_and_nothing_is_lost() {
    let sim = common::sim(|c| c.receipt_delay = Duration::from_millis(5)).await;
    let gw = common::gateway(&sim, "").await;
    let mut lc = LoadConfig::new(gw.brand_addr(), "bank", "pw1", 20_000);
    lc.rate = Some(10_000);
    lc.window = 200;
    lc.receipt_timeout = Duration::from_secs(20);
    let load = tokio::spawn(loadgen::run(lc));
    // Drop every carrier connection three times during the run.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        sim.drop_connections();
    }
    let report = tokio::time::timeout(Duration::from_secs(60), load)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(report.accepted, 20_000);
    // Every accepted message reached the carrier at least once; repeats only for
    // messages that were in flight when a connection dropped.
    let records = sim.records();
    let distinct: HashSet<u64> = records.iter().map(|r| index_of(r.text())).collect();
    assert_eq!(distinct.len(), 20_000, "messages lost");
    let dups = records.len() - distinct.len();
    assert!(
        dups <= 3 * 2 * 200,
        "{dups} duplicates: more than three windows' worth"
    );
    // Each message still gets exactly one receipt.
    assert_eq!(report.missing_receipts, 0);
    assert_eq!(report.duplicate_receipts, 0);
    assert_eq!(report.receipts, 20_000);
    assert!(gw.binds_up()[0].1 >= 1);
    gw.shutdown().await;
    sim.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_carrier_gets_everything_and_cap_is_lifted() {
    let sim = common::sim(|c| c.rate_cap = Some(1_000)).await;
    let gw = common::gateway(&sim, "").await;
    let mut lc = LoadConfig::new(gw.brand_addr(), "bank", "pw1", 3_000);
    lc.receipt_timeout = Duration::from_secs(20);
    let load = tokio::spawn(loadgen::run(lc));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(sim.throttled() > 0, "the cap was never hit");
    sim.set_rate_cap(None);
    let report = tokio::time::timeout(Duration::from_secs(60), load)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(report.accepted, 3_000);
    assert_eq!(report.receipts, 3_000);
    assert_eq!(report.missing_receipts, 0);
    let distinct: HashSet<u64> = sim.records().iter().map(|r| index_of(r.text())).collect();
    assert_eq!(distinct.len(), 3_000);
    assert_eq!(
        sim.records().len(),
        3_000,
        "a throttled submit is not a duplicate"
    );
    gw.shutdown().await;
    sim.shutdown();
}

/// A carrier written by hand: answers the bind and each submit, then sends a receipt
/// whose receipted_message_id TLV lacks its NUL, and records what the gateway acked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipt_without_nul_is_acknowledged_and_matched() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let carrier_addr = listener.local_addr().unwrap();
    let carrier = tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        let (r, mut w) = s.into_split();
        let mut rd = FramedRead::new(r, SmppCodec::default());
        let mut acks = Vec::new();
        let mut next_id = 100u32;
        while let Ok(Some(Ok(f))) = tokio::time::timeout(Duration::from_secs(10), rd.next()).await {
            let Frame::Command(c) = f else { continue };
            let mut out = BytesMut::new();
            match u32::from(c.id()) {
                cmd::BIND_TRANSCEIVER => encode_command(
                    &pdu::bind_resp(cmd::BIND_TRANSCEIVER, c.sequence_number(), "raw"),
                    &mut out,
                ),
                cmd::SUBMIT_SM => {
                    let Some(Pdu::SubmitSm(s)) = c.pdu() else {
                        continue;
                    };
                    let f = pdu::SubmitFields::from_submit_sm(s);
                    next_id += 1;
                    let id = next_id.to_string();
                    encode_command(&pdu::submit_sm_resp(c.sequence_number(), &id), &mut out);
                    // A receipt whose receipted_message_id has no NUL terminator.
                    let rd_sm = pdu::receipt_deliver_sm(&pdu::ReceiptPdu {
                        source: &f.dest,
                        dest: &f.source,
                        message_id: &id,
                        state: otpgw_proto::receipt::DeliveryState::Delivered,
                        submit_date: "2611261120",
                        done_date: "2611261121",
                        err: "000",
                    })
                    .unwrap();
                    let mut full = BytesMut::new();
                    encode_command(
                        &otpgw_proto::rusmpp::Command::new(
                            otpgw_proto::rusmpp::CommandStatus::EsmeRok,
                            9000 + next_id,
                            rd_sm,
                        ),
                        &mut full,
                    );
                    let tlv = [0x00, 0x1E, 0x00, (id.len() + 1) as u8];
                    let pos = full.windows(4).position(|x| x == tlv).unwrap();
                    let nul = pos + 4 + id.len();
                    let mut bad = BytesMut::new();
                    bad.put_slice(&full[..pos + 3]);
                    bad.put_u8(id.len() as u8);
                    bad.put_slice(&full[pos + 4..nul]);
                    bad.put_slice(&full[nul + 1..]);
                    let len = bad.len() as u32;
                    bad[..4].copy_from_slice(&len.to_be_bytes());
                    out.put_slice(&bad);
                }
                cmd::DELIVER_SM_RESP => acks.push((c.sequence_number(), u32::from(c.status()))),
                cmd::ENQUIRE_LINK => encode_command(
                    &pdu::header_only(cmd::ENQUIRE_LINK_RESP, 0, c.sequence_number()),
                    &mut out,
                ),
                cmd::UNBIND => {
                    encode_command(
                        &pdu::header_only(cmd::UNBIND_RESP, 0, c.sequence_number()),
                        &mut out,
                    );
                    let _ = w.write_all(&out).await;
                    break;
                }
                _ => {}
            }
            if !out.is_empty() && w.write_all(&out).await.is_err() {
                break;
            }
            if acks.len() == 5 {
                break;
            }
        }
        acks
    });
    let text = common::config_text("127.0.0.1:0", &[("raw", carrier_addr)], "")
        .replace("binds = 2", "binds = 1");
    let gw = common::start(&text).await;
    assert!(gw.wait_bound(1, Duration::from_secs(5)).await);
    let mut lc = LoadConfig::new(gw.brand_addr(), "bank", "pw1", 5);
    lc.receipt_timeout = Duration::from_secs(5);
    let report = loadgen::run(lc).await.unwrap();
    let acks = carrier.await.unwrap();
    assert_eq!(acks.len(), 5, "every malformed receipt is acknowledged");
    assert!(acks.iter().all(|(seq, st)| *seq > 9000 && *st == 0));
    assert_eq!(report.receipts, 5, "and reaches the brand");
    assert_eq!(report.missing_receipts, 0);
    gw.shutdown().await;
}

/// A carrier capped at 1,000/s while brands offer 2,000/s: the gateway lowers its
/// rate on the throttle answers (AIMD), so they settle to a trickle instead of
/// hitting the cap on every retry, and everything is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttle_answers_settle_under_a_carrier_cap() {
    let sim = common::sim(|c| {
        c.rate_cap = Some(1_000);
        c.receipt_delay = Duration::from_millis(5);
    })
    .await;
    let gw = common::gateway(&sim, "").await;
    let mut lc = LoadConfig::new(gw.brand_addr(), "bank", "pw1", 8_000);
    lc.rate = Some(2_000);
    lc.receipt_timeout = Duration::from_secs(10);
    let load = tokio::spawn(loadgen::run(lc));
    let mut samples = Vec::new();
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        samples.push((sim.received(), sim.throttled()));
    }
    let report = tokio::time::timeout(Duration::from_secs(60), load)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(report.receipts, 8_000, "everything delivered");
    let per_second: Vec<(usize, u64)> = samples
        .windows(2)
        .map(|w| (w[1].0 - w[0].0, w[1].1 - w[0].1))
        .collect();
    eprintln!("carrier took / throttled, per second: {per_second:?}");
    let first = samples[0].1;
    let last3: u64 = per_second.iter().rev().take(3).map(|(_, t)| t).sum();
    assert!(first > 0, "the cap was hit");
    assert!(
        last3 * 3 < first.max(30),
        "throttle answers did not settle: first second {first}, last three {last3}"
    );
    for (took, _) in &per_second {
        assert!(*took <= 1_100, "carrier cap exceeded: {took} in a second");
    }
    gw.shutdown().await;
    sim.shutdown();
}

/// Two carriers on one route; the first dies mid-run (connections dropped, new ones
/// refused). Its queued and in-flight messages move to the second within the
/// configured failover time; every message is delivered, none expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn carrier_killed_mid_run_fails_over_to_the_next_on_the_route() {
    let a = common::sim(|c| c.receipt_delay = Duration::from_millis(5)).await;
    let b = common::sim(|c| c.receipt_delay = Duration::from_millis(5)).await;
    let text = common::config_text(
        "127.0.0.1:0",
        &[("a", a.addr()), ("b", b.addr())],
        "failover_after_ms = 500",
    );
    let gw = common::start(&text).await;
    assert!(gw.wait_bound(2, Duration::from_secs(10)).await);
    let mut lc = LoadConfig::new(gw.brand_addr(), "bank", "pw1", 6_000);
    lc.rate = Some(3_000);
    lc.receipt_timeout = Duration::from_secs(10);
    let load = tokio::spawn(loadgen::run(lc));
    tokio::time::sleep(Duration::from_millis(700)).await;
    a.set_accepting(false);
    a.drop_connections();
    // Carrier a comes back later: the receipts it held for messages it had
    // acknowledged before dying arrive then.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after_kill = b.received();
    a.set_accepting(true);
    let report = tokio::time::timeout(Duration::from_secs(60), load)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(report.accepted, 6_000);
    let mut at_carriers: HashSet<u64> = a.records().iter().map(|r| index_of(r.text())).collect();
    let before = at_carriers.len();
    at_carriers.extend(b.records().iter().map(|r| index_of(r.text())));
    assert_eq!(at_carriers.len(), 6_000, "messages lost");
    assert!(
        before > 0 && after_kill > 0,
        "both carriers were used (a: {before}, b: {after_kill})"
    );
    assert_eq!(report.receipts, 6_000, "every message's receipt");
    assert_eq!(report.missing_receipts, 0);
    assert_eq!(
        report.receipts_by_state.get("expired"),
        None,
        "an expired message was sent or dropped"
    );
    eprintln!("carrier a took {before}, carrier b took {}", b.received());
    gw.shutdown().await;
    a.shutdown();
    b.shutdown();
}
