//! Durable acceptance with the real `otpgw serve` binary and the embedded store:
//! SIGKILL under load, receipts that arrive while the gateway is down, messages that
//! expire while it is down, and a graceful SIGTERM. Bounded in size and time for CI.

use crate::common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::index_of;
use otpgw_proto::receipt::DeliveryState;
use otpgw_sim::loadgen::{self, LoadConfig, LoadReport};
use otpgw_sim::smsc::Outcomes;

/// Receipts a brand saw, by otpgw message id: own receipts of a run by index, and
/// receipts for earlier runs' ids.
#[derive(Default)]
struct BrandView {
    acked: HashMap<u64, String>,
    receipts: HashMap<String, Vec<DeliveryState>>,
    duplicate_receipts: u64,
}

impl BrandView {
    fn add(&mut self, r: &LoadReport) {
        for (i, id) in &r.ids {
            self.acked.insert(*i, id.clone());
        }
        for (i, st) in &r.states {
            if let Some(id) = r.ids.get(i) {
                self.receipts.entry(id.clone()).or_default().push(*st);
            }
        }
        self.duplicate_receipts += r.duplicate_receipts;
        for (id, st) in &r.foreign_receipts {
            self.receipts.entry(id.clone()).or_default().push(*st);
        }
    }
}

/// A run that only listens for receipts (of earlier runs' messages) until none came
/// for `quiet`.
async fn collect(addr: std::net::SocketAddr, quiet: Duration) -> LoadReport {
    let mut lc = LoadConfig::new(addr, "bank", "pw1", 0);
    lc.expect_receipts = Some(u64::MAX);
    lc.receipt_timeout = quiet;
    loadgen::run(lc).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_nothing_acknowledged() {
    let sim = common::sim(|c| {
        c.receipt_delay = Duration::from_millis(30);
        c.outcomes = Outcomes {
            delivered: 90,
            undeliverable: 7,
            expired: 3,
        };
    })
    .await;
    let mut gw = common::serve_process(&sim, "crash").await;
    let mut brand = BrandView::default();
    let mut seed = u64::from(std::process::id());
    let rounds = 4u64;
    for round in 0..rounds {
        let mut lc = LoadConfig::new(gw.addr(), "bank", "pw1", 6_000);
        lc.first_index = round * 6_000;
        lc.rate = Some(6_000);
        lc.window = 200;
        lc.receipt_timeout = Duration::from_secs(2);
        let load = tokio::spawn(loadgen::run(lc));
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        tokio::time::sleep(Duration::from_millis(250 + (seed >> 33) % 500)).await;
        gw.kill9();
        let report = tokio::time::timeout(Duration::from_secs(60), load)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(report.accepted > 0, "round {round}: nothing acknowledged");
        brand.add(&report);
        gw.restart().await;
    }
    // Let the last restart drain, collect the receipts owed from earlier rounds.
    brand.add(&collect(gw.addr(), Duration::from_secs(4)).await);
    assert_eq!(
        gw.term(Duration::from_secs(15)).await,
        Some(0),
        "graceful exit:\n{}",
        gw.logs()
    );

    // Zero lost: every message the brand saw acknowledged reached the carrier.
    let records = sim.records();
    let at_carrier: HashSet<u64> = records.iter().map(|r| index_of(r.text())).collect();
    let lost: Vec<_> = brand
        .acked
        .keys()
        .filter(|i| !at_carrier.contains(i))
        .take(10)
        .collect();
    assert!(lost.is_empty(), "acknowledged but never sent: {lost:?}");
    // Duplicates only for messages that may have been in flight, and counted.
    let duplicates = (records.len() - at_carrier.len()) as u64;
    let counted = gw.recovered("possibly_sent");
    assert!(
        duplicates <= counted,
        "{duplicates} duplicates but only {counted} counted"
    );
    assert!(
        counted <= rounds * 2 * 200,
        "{counted} possible duplicates: more than in flight"
    );
    // Every acknowledged message's receipt reached the brand, with the carrier's outcome.
    let outcome: HashMap<u64, DeliveryState> = records
        .iter()
        .map(|r| (index_of(r.text()), r.outcome))
        .collect();
    let mut missing = Vec::new();
    for (i, id) in &brand.acked {
        match brand.receipts.get(id) {
            None => missing.push(*i),
            Some(states) => {
                // A duplicate submission has its own outcome; either is the truth.
                let own = outcome[i];
                assert!(
                    states.contains(&own) || duplicates > 0,
                    "message {i}: {states:?} vs {own:?}"
                );
            }
        }
    }
    assert!(
        missing.is_empty(),
        "{} acknowledged messages got no receipt, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    // Receipts to brands are at-least-once: one whose deliver_sm_resp arrived just
    // before a kill, before the store recorded it as forwarded, is sent again, and
    // every such repeat is counted by the recovery that sent it again.
    let again = brand.receipts.values().filter(|v| v.len() > 1).count();
    let repeats: u64 = brand
        .receipts
        .values()
        .map(|v| v.len() as u64 - 1)
        .sum::<u64>()
        + brand.duplicate_receipts;
    let repeats_counted = gw.recovered("receipts_possibly_redelivered");
    assert!(
        repeats <= repeats_counted,
        "{repeats} receipts repeated, {repeats_counted} counted"
    );
    eprintln!(
        "acked {}, at carrier {} ({} duplicates, {} counted), brand got receipts for {} ids ({} of them again after a restart)",
        brand.acked.len(),
        records.len(),
        duplicates,
        counted,
        brand.receipts.len(),
        again
    );
    eprintln!("receipts repeated {repeats}, counted as possibly repeated {repeats_counted}");
    sim.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_that_arrive_while_down_reach_the_brand_after_restart() {
    let sim = common::sim(|c| c.receipt_delay = Duration::from_millis(1500)).await;
    let mut gw = common::serve_process(&sim, "down").await;
    let mut lc = LoadConfig::new(gw.addr(), "bank", "pw1", 300);
    lc.receipt_timeout = Duration::from_millis(200);
    let first = loadgen::run(lc).await.unwrap();
    assert_eq!(first.accepted, 300);
    assert_eq!(first.receipts, 0, "receipts come later");
    while sim.received() < 300 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await; // carrier ids recorded
    gw.kill9();
    // The receipts fall due while otpgw is down: the carrier holds them.
    tokio::time::sleep(Duration::from_millis(1800)).await;
    assert_eq!(sim.pending_receipts(), 300);
    gw.restart().await;
    let later = collect(gw.addr(), Duration::from_secs(3)).await;
    let got: HashSet<&String> = later.foreign_receipts.iter().map(|(id, _)| id).collect();
    let want: HashSet<&String> = first.ids.values().collect();
    assert_eq!(got, want, "every receipt held while down reached the brand");
    assert_eq!(later.foreign_receipts.len(), 300, "exactly once");
    assert_eq!(sim.records().len(), 300, "nothing was sent twice");
    assert_eq!(gw.recovered("awaiting_receipt"), 300);
    assert_eq!(gw.term(Duration::from_secs(10)).await, Some(0));
    sim.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_that_expire_while_down_are_never_sent() {
    let sim = common::sim(|_| {}).await;
    sim.set_accepting(false); // the carrier is unreachable: messages stay queued
    let mut gw = common::serve_process(&sim, "expire").await;
    let mut lc = LoadConfig::new(gw.addr(), "bank", "pw1", 50);
    lc.validity_period = "000000000002000R".into(); // 2 seconds
    lc.receipt_timeout = Duration::from_millis(100);
    let first = loadgen::run(lc).await.unwrap();
    assert_eq!(first.accepted, 50);
    gw.kill9();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    sim.set_accepting(true);
    gw.restart().await;
    let later = collect(gw.addr(), Duration::from_secs(2)).await;
    assert_eq!(later.foreign_receipts.len(), 50);
    assert!(
        later
            .foreign_receipts
            .iter()
            .all(|(_, st)| *st == DeliveryState::Expired)
    );
    assert_eq!(gw.recovered("expired"), 50);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sim.received(), 0, "an expired OTP was sent");
    assert_eq!(gw.term(Duration::from_secs(10)).await, Some(0));
    sim.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_exits_zero_and_the_rest_goes_out_after_restart() {
    let sim = common::sim(|c| c.receipt_delay = Duration::from_millis(20)).await;
    let mut gw = common::serve_process(&sim, "term").await;
    let mut lc = LoadConfig::new(gw.addr(), "bank", "pw1", 5_000);
    lc.rate = Some(5_000);
    lc.receipt_timeout = Duration::from_secs(1);
    let load = tokio::spawn(loadgen::run(lc));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        gw.term(Duration::from_secs(10)).await,
        Some(0),
        "exit status:\n{}",
        gw.logs()
    );
    let first = load.await.unwrap().unwrap();
    assert!(first.accepted > 0);
    gw.restart().await;
    let later = collect(gw.addr(), Duration::from_secs(2)).await;
    let mut brand = BrandView::default();
    brand.add(&first);
    brand.add(&later);
    let at_carrier: HashSet<u64> = sim.records().iter().map(|r| index_of(r.text())).collect();
    assert!(
        brand.acked.keys().all(|i| at_carrier.contains(i)),
        "acknowledged message lost"
    );
    assert!(
        brand
            .acked
            .values()
            .all(|id| brand.receipts.contains_key(id)),
        "receipt lost"
    );
    assert_eq!(
        sim.records().len(),
        at_carrier.len(),
        "a graceful stop sends nothing twice"
    );
    assert_eq!(gw.term(Duration::from_secs(10)).await, Some(0));
    sim.shutdown();
}

/// A receipt written to the brand whose `deliver_sm_resp` never came is sent again
/// after a SIGKILL (SMPP cannot say whether the brand had it), and counted: the
/// recovery logs it and `otpgw_receipts_possibly_redelivered_total` says so. Before,
/// such repeats were not counted anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_repeated_after_a_crash_is_counted() {
    use common::Raw;
    use otpgw_proto::pdu::{self, SubmitFields};
    use otpgw_proto::rusmpp::{Command, CommandStatus};
    use otpgw_proto::status::cmd;
    let sim = common::sim(|c| c.receipt_delay = Duration::from_millis(10)).await;
    let mut gw = common::serve_process(&sim, "repeat").await;
    let mut t = Raw::connect(gw.addr()).await;
    assert_eq!(t.bind(cmd::BIND_TRANSCEIVER, "bank", "pw1", 1).await.1, 0);
    let mut ids = HashSet::new();
    for i in 0..3u32 {
        let f = SubmitFields {
            registered_delivery: 1,
            short_message: bytes::Bytes::from_static(b"Your code is 123456"),
            ..otpgw_testkit::sample::fields("BANK", &format!("44740093{i:04}"))
        };
        t.send(&Command::new(
            CommandStatus::EsmeRok,
            10 + i,
            f.to_submit_sm().unwrap(),
        ))
        .await;
    }
    // The receipts arrive; the brand never answers them.
    let mut got = HashSet::new();
    while got.len() < 3 {
        let c = tokio::time::timeout(Duration::from_secs(5), t.next_command())
            .await
            .expect("a receipt in time")
            .expect("the session is up");
        match u32::from(c.id()) {
            cmd::SUBMIT_SM_RESP => {
                ids.insert(pdu::submit_sm_resp_id(&c).unwrap());
            }
            cmd::DELIVER_SM => {
                if let Some(otpgw_proto::rusmpp::Pdu::DeliverSm(d)) = c.pdu() {
                    got.insert(pdu::DeliverView::from_deliver_sm(d).receipt().unwrap().id);
                }
            }
            _ => {}
        }
    }
    assert_eq!(got, ids);
    gw.kill9();
    drop(t);
    gw.restart().await;
    assert_eq!(
        gw.recovered("receipts_possibly_redelivered"),
        3,
        "{}",
        gw.logs()
    );
    // The brand gets them again, and acknowledges them this time.
    let again = collect(gw.addr(), Duration::from_secs(2)).await;
    let again: HashSet<String> = again
        .foreign_receipts
        .iter()
        .map(|(id, _)| id.clone())
        .collect();
    assert_eq!(again, ids);
    assert_eq!(gw.term(Duration::from_secs(15)).await, Some(0));
    sim.shutdown();
}
