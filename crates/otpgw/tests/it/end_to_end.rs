//! The whole path on real sockets: a brand binds to otpgw and submits; otpgw submits to
//! the simulated carrier over its own binds; receipts come back to the brand.

use crate::common;

use common::index_of;

use std::collections::HashMap;
use std::time::Duration;

use otpgw_proto::receipt::DeliveryState;
use otpgw_sim::loadgen::{self, LoadConfig, dest_for, text_for};
use otpgw_sim::smsc::{IdStyle, Outcomes, ReceiptFormat};

async fn run_and_check(count: u64, sim: otpgw_sim::SimHandle, extra: &str, binds: usize) {
    let gw = common::gateway(&sim, extra).await;
    let mut lc = LoadConfig::new(gw.brand_addr(), "bank", "pw1", count);
    lc.binds = binds;
    lc.window = 200;
    lc.receipt_timeout = Duration::from_secs(20);
    let report = tokio::time::timeout(Duration::from_secs(120), loadgen::run(lc))
        .await
        .expect("load finished in time")
        .expect("load ran");

    // Every message accepted, with a unique otpgw id.
    assert_eq!(report.accepted, count, "refused: {:?}", report.rejected);
    let mut ids: Vec<&String> = report.ids.values().collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len() as u64, count, "message ids must be unique");

    // Every message reached the carrier exactly once, unchanged.
    let records = sim.records();
    assert_eq!(
        records.len() as u64,
        count,
        "carrier received a different number of messages"
    );
    let mut outcome_by_index: HashMap<u64, DeliveryState> = HashMap::new();
    for r in &records {
        let i = index_of(r.text());
        assert!(
            outcome_by_index.insert(i, r.outcome).is_none(),
            "message {i} reached the carrier twice"
        );
        assert_eq!(r.text(), &text_for(i, 20)[..], "text changed");
        assert_eq!(r.fields.dest.addr, dest_for(i), "destination changed");
        assert_eq!(r.fields.data_coding, 0, "data_coding changed");
        assert_eq!(r.fields.source.addr, "OTPGW", "source changed");
        assert_eq!(r.fields.registered_delivery, 1);
        assert!(
            !r.fields.validity_period.is_empty(),
            "carrier must be told the deadline"
        );
    }

    // Exactly one receipt per message, with the brand's own id and the carrier's outcome.
    assert_eq!(report.missing_receipts, 0, "missing receipts");
    assert_eq!(report.duplicate_receipts, 0, "duplicate receipts");
    assert_eq!(report.unknown_receipts, 0, "receipts for unknown ids");
    assert_eq!(report.receipts, count);
    assert_eq!(
        report.states.len() as u64,
        count,
        "a final state for every message"
    );
    for (i, state) in &report.states {
        assert_eq!(
            Some(state),
            outcome_by_index.get(i),
            "wrong final state for message {i}"
        );
    }
    assert!(
        report
            .receipts_by_state
            .get("undeliverable")
            .copied()
            .unwrap_or(0)
            > 0
    );
    assert!(
        report
            .receipts_by_state
            .get("expired")
            .copied()
            .unwrap_or(0)
            > 0
    );
    assert_eq!(gw.in_flight(), 0, "nothing may stay in flight");
    gw.shutdown().await;
    sim.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_messages_each_delivered_once_with_one_receipt() {
    let sim = common::sim(|c| {
        c.outcomes = Outcomes {
            delivered: 90,
            undeliverable: 7,
            expired: 3,
        };
        c.receipt_delay = Duration::from_millis(20);
    })
    .await;
    run_and_check(10_000, sim, "", 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_before_responses_text_only_and_decimal_to_hex_ids() {
    // A harder carrier: receipts overtake their submit_sm_resp, carry no TLVs, and
    // use hex where the response used decimal; the gateway binds tx + rx. Such a
    // carrier gives nothing to learn from, so its convention is configured.
    let sim = common::sim(|c| {
        c.outcomes = Outcomes {
            delivered: 80,
            undeliverable: 15,
            expired: 5,
        };
        c.early_receipts = true;
        c.receipt_format = ReceiptFormat::TextOnly;
        c.resp_id_style = IdStyle::Decimal;
        c.receipt_id_style = IdStyle::HexPadded;
    })
    .await;
    run_and_check(
        3_000,
        sim,
        "bind_mode = \"transmitter_receiver\"\nreceipt_ids = \"decimal_to_hex\"",
        1,
    )
    .await;
}

/// The load generator's options (`otpgw bench`): a priority mix, UCS-2 texts, long
/// texts sent as message_payload, and a run ended by its duration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_generator_mix_encoding_long_texts_and_duration() {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    let sim = common::sim(|_| {}).await;
    let gw = common::gateway(&sim, "").await;
    let run = |lc: LoadConfig, p: Arc<loadgen::Progress>| async move {
        tokio::time::timeout(Duration::from_secs(60), loadgen::run_with_progress(lc, p))
            .await
            .expect("load finished in time")
            .expect("load ran")
    };

    // 25 % OTP, UCS-2, 30 characters.
    let mut lc = LoadConfig::new(gw.brand_addr(), "bank", "pw1", 400);
    lc.otp_percent = 25;
    lc.data_coding = 8;
    lc.text_len = 30;
    let p = Arc::new(loadgen::Progress::default());
    let r = run(lc, p.clone()).await;
    assert_eq!((r.accepted, r.receipts, r.missing_receipts), (400, 400, 0));
    assert_eq!(p.accepted.load(Ordering::Relaxed), 400);
    assert_eq!(p.sent.load(Ordering::Relaxed), 400);
    assert_eq!(r.per_second.iter().map(|s| s.accepted).sum::<u64>(), 400);
    assert_eq!(r.per_second.iter().map(|s| s.receipts).sum::<u64>(), 400);
    let recs = sim.records();
    assert_eq!(recs.len(), 400);
    let otp = recs.iter().filter(|r| r.fields.priority_flag > 0).count();
    assert_eq!(otp, 100, "a quarter sent as OTP");
    for rec in &recs {
        assert_eq!(rec.fields.data_coding, 8);
        let units: Vec<u16> = rec
            .text()
            .chunks(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect();
        let text = String::from_utf16(&units).expect("UCS-2 text");
        let i = common::index_of(text.as_bytes());
        assert_eq!(text.as_bytes(), &text_for(i, 30)[..]);
        assert_eq!(rec.fields.priority_flag > 0, loadgen::is_otp(i, 25));
    }

    // 300 GSM characters: message_payload at the gateway, two parts at the carrier,
    // one receipt per message at the brand.
    let mut lc = LoadConfig::new(gw.brand_addr(), "bank", "pw1", 20);
    lc.text_len = 300;
    lc.first_index = 1_000;
    let r = run(lc, Arc::new(loadgen::Progress::default())).await;
    assert_eq!((r.accepted, r.receipts, r.duplicate_receipts), (20, 20, 0));
    assert_eq!(sim.records().len(), 400 + 40, "two parts per long message");

    // A paced run ended by its duration long before its count.
    let mut lc = LoadConfig::new(gw.brand_addr(), "bank", "pw1", 1_000_000);
    lc.rate = Some(200);
    lc.duration = Some(Duration::from_millis(500));
    lc.first_index = 2_000;
    let p = Arc::new(loadgen::Progress::default());
    let r = run(lc, p.clone()).await;
    assert!(
        (50..=200).contains(&r.sent),
        "sent {} in 0.5 s at 200/s",
        r.sent
    );
    assert_eq!(r.accepted, r.sent);
    assert_eq!(r.receipts, r.sent);
    assert_eq!(p.sent.load(Ordering::Relaxed), r.sent);
}
