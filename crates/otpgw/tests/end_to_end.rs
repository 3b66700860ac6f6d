//! The whole path on real sockets: a brand binds to otpgw and submits; otpgw submits to
//! the simulated carrier over its own binds; receipts come back to the brand.

mod common;

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
