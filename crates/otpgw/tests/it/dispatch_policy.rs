//! Dispatch policies against the simulator on 127.0.0.1: brands refused at once when
//! no carrier of the route is up, the policy for submits whose response never came,
//! and messages leaving a carrier whose errors persist.

use crate::common;

use std::collections::HashSet;
use std::time::Duration;

use common::index_of;
use otpgw_node::Gateway;
use otpgw_proto::status;
use otpgw_sim::loadgen::{self, LoadConfig};

async fn start(text: &str, binds: usize) -> Gateway {
    let gw = common::start(text).await;
    assert!(gw.wait_bound(binds, Duration::from_secs(10)).await);
    gw
}

fn load(gw: &Gateway, count: u64, first: u64) -> LoadConfig {
    let mut lc = LoadConfig::new(gw.brand_addr(), "bank", "pw1", count);
    lc.first_index = first;
    lc.receipt_timeout = Duration::from_secs(10);
    lc
}

/// With the only carrier of the route down past `refuse_after_down_ms`, a brand gets
/// ESME_RTHROTTLED at once instead of a message that waits in vain; once the carrier
/// is back, messages are accepted and delivered again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brands_are_throttled_while_no_carrier_of_the_route_is_up() {
    let sim = common::sim(|_| {}).await;
    // The simulator's small dense ids read alike in hex and decimal, and the early
    // messages never get receipts: state the id convention rather than have it learned.
    let mut text = common::config_text(
        "127.0.0.1:0",
        &[("sim", sim.addr())],
        "receipt_ids = \"hex_to_decimal\"",
    );
    text.push_str("\n[queue]\nrefuse_after_down_ms = 800\n");
    let gw = start(&text, 2).await;

    sim.set_accepting(false);
    sim.drop_connections();
    // Within the grace time messages are still accepted (they wait for a bind).
    let mut lc = load(&gw, 20, 0);
    lc.registered_delivery = 0;
    lc.validity_period = "000000001000000R".into(); // 10 minutes, relative
    let early = loadgen::run(lc).await.unwrap();
    assert_eq!(
        early.accepted, 20,
        "refused too early: {:?}",
        early.rejected
    );
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let mut lc = load(&gw, 50, 1_000);
    lc.registered_delivery = 0;
    let started = std::time::Instant::now();
    let refused = loadgen::run(lc).await.unwrap();
    assert_eq!(refused.accepted, 0);
    assert_eq!(
        refused.rejected.get(&status::ESME_RTHROTTLED),
        Some(&50),
        "{:?}",
        refused.rejected
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answered at once"
    );

    // The carrier returns: accepted again, and the early messages are delivered.
    sim.set_accepting(true);
    assert!(gw.wait_bound(2, Duration::from_secs(10)).await);
    let after = loadgen::run(load(&gw, 20, 2_000)).await.unwrap();
    assert_eq!(after.accepted, 20, "{:?}", after.rejected);
    assert_eq!(
        after.receipts,
        20,
        "sim pending {} sent {} gw waiting {} in flight {}",
        sim.pending_receipts(),
        sim.receipts_sent(),
        gw.receipts_waiting(),
        gw.in_flight()
    );
    let got: HashSet<u64> = sim.records().iter().map(|r| index_of(r.text())).collect();
    assert!(
        (0..20).all(|i| got.contains(&i)),
        "early messages delivered"
    );
    // They waited over a second: the relative validity the carrier got is shorter
    // than the brand's 10 minutes by at least that (never later than the deadline).
    for r in sim.records().iter().filter(|r| index_of(r.text()) < 20) {
        let left = otpgw_proto::time::parse_smpp_time(&r.fields.validity_period, 0)
            .unwrap()
            .unwrap();
        assert!(left <= 599_000, "validity sent: {left} ms");
        assert!(left >= 590_000, "validity sent: {left} ms");
    }
    gw.shutdown().await;
    sim.shutdown();
}

/// A carrier that swallows submits: with `unanswered = "fail"` each message is
/// finished as UNKNOWN (a receipt says so) and never sent twice; with the default
/// "resend" it is sent again once the carrier answers, and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_submits_follow_the_configured_policy() {
    for (policy, resend) in [("fail", false), ("resend", true)] {
        let sim = common::sim(|_| {}).await;
        let extra = format!("response_timeout_ms = 300\nunanswered = \"{policy}\"");
        let text = common::config_text("127.0.0.1:0", &[("sim", sim.addr())], &extra);
        let gw = start(&text, 2).await;
        sim.set_silent(true);
        let lc = load(&gw, 30, 0);
        let run = tokio::spawn(loadgen::run(lc));
        // Let every submit go unanswered at least once, then heal the carrier.
        tokio::time::sleep(Duration::from_millis(900)).await;
        sim.set_silent(false);
        let report = run.await.unwrap().unwrap();
        assert_eq!(report.accepted, 30);
        assert_eq!(report.receipts, 30, "{policy}: one receipt each");
        assert_eq!(report.duplicate_receipts, 0);
        let swallowed = sim.faulted();
        assert!(
            swallowed >= 30,
            "{policy}: the carrier swallowed {swallowed}"
        );
        let delivered = report
            .receipts_by_state
            .get("delivered")
            .copied()
            .unwrap_or(0);
        let unknown = report
            .receipts_by_state
            .get("unknown")
            .copied()
            .unwrap_or(0);
        if resend {
            assert_eq!(delivered, 30, "{policy}: {:?}", report.receipts_by_state);
            assert_eq!(sim.received(), 30, "{policy}: delivered once each");
        } else {
            assert_eq!(unknown, 30, "{policy}: {:?}", report.receipts_by_state);
            assert_eq!(sim.received(), 0, "{policy}: never sent twice");
        }
        gw.shutdown().await;
        sim.shutdown();
    }
}

/// Carrier a answers every submit with a temporary error (ESME_RSYSERR) while its
/// binds stay up. Each message moves to carrier b after `failover_attempts` failures,
/// the carrier is then marked failing and new messages go to b directly; every
/// message is delivered exactly once, none expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_errors_move_messages_to_the_next_carrier() {
    let a = common::sim(|_| {}).await;
    let b = common::sim(|_| {}).await;
    a.set_submit_error(Some(status::ESME_RSYSERR));
    let text = common::config_text(
        "127.0.0.1:0",
        &[("a", a.addr()), ("b", b.addr())],
        "failover_after_ms = 500\nfailing_errors = 10\nfailover_attempts = 2",
    );
    let gw = start(&text, 2).await;
    let mut lc = load(&gw, 1_000, 0);
    lc.rate = Some(250);
    let report = tokio::time::timeout(Duration::from_secs(60), loadgen::run(lc))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.accepted, 1_000);
    assert_eq!(report.receipts, 1_000);
    assert_eq!(report.receipts_by_state.get("delivered"), Some(&1_000));
    assert_eq!(a.received(), 0);
    assert_eq!(
        b.received(),
        1_000,
        "each message delivered once, through b"
    );
    let refused_by_a = a.faulted();
    assert!(refused_by_a >= 2, "carrier a was tried");
    assert!(
        refused_by_a < 1_000,
        "once failing, carrier a gets no new messages (it refused {refused_by_a})"
    );
    gw.shutdown().await;
    a.shutdown();
    b.shutdown();
}
