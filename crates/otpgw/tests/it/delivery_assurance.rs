//! Delivery assurance with two simulated carriers: an OTP whose receipt does not
//! come in time goes out again through the other carrier, the brand gets exactly
//! one receipt, nothing is sent after its deadline, quality routing moves traffic
//! away from a carrier that loses receipts and back when it is mended, a SIGKILL
//! during fallback sends no OTP a third time, and an OTP whose every attempt got no
//! receipt calls the brand's fallback URL.

use crate::common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{BANK_HOOK_SECRET, HookSink, index_of};
use otpgw_proto::receipt::DeliveryState;
use otpgw_sim::loadgen::{self, LoadConfig};
use otpgw_sim::{Rule, SimHandle};

/// A config with carriers a and b (receipt timeout `timeout_ms`), routes `[a, b]`
/// choosing by `select`, a 6-second quality window, and `brand_extra` for bank.
fn config(
    listen: &str,
    a: &SimHandle,
    b: &SimHandle,
    store: &str,
    timeout_ms: u64,
    select: &str,
    brand_extra: &str,
) -> String {
    let carrier = format!("receipt_timeout_ms = {timeout_ms}\nreceipt_ids = \"hex_to_decimal\"");
    let quality =
        "[quality]\nwindow_secs = 6\nwithin_ms = 1500\nmin_samples = 20\nexplore = 0.05\n";
    let mut t = common::config_text_full(
        listen,
        &[("a", a.addr()), ("b", b.addr())],
        &carrier,
        store,
        [brand_extra, ""],
        quality,
    );
    t.push_str(&format!("select = \"{select}\"\n"));
    t
}

fn store_line(tag: &str) -> String {
    format!(
        "path = \"{}\"",
        common::store_dir(tag).join("otpgw.redb").display()
    )
}

/// Sends of each message index to one carrier.
fn sends(sim: &SimHandle) -> HashMap<u64, Vec<Instant>> {
    let mut m: HashMap<u64, Vec<Instant>> = HashMap::new();
    for r in sim.records() {
        m.entry(index_of(r.text())).or_default().push(r.at);
    }
    m
}

/// Carrier A loses 30 % of its receipts for numbers starting 44: every OTP still
/// ends DELIVERED at the brand (through A or, after A's receipt timeout, through B),
/// with exactly one receipt; nothing goes out after its deadline; quality routing
/// sends under 20 % to A within 30 seconds, and most to A again once A is mended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_receipts_fall_back_and_quality_routing_moves_and_recovers() {
    let a = common::sim(|c| {
        c.receipt_delay = Duration::from_millis(50);
        c.rules = vec![Rule::parse("44:30:drop").unwrap()];
    })
    .await;
    let b = common::sim(|c| c.receipt_delay = Duration::from_millis(50)).await;
    let text = config(
        "127.0.0.1:0",
        &a,
        &b,
        &store_line("assure-q"),
        1000,
        "quality",
        "",
    )
    .replace(
        "[ops]\nlisten = \"127.0.0.1:0\"",
        "[ops]\nlisten = \"127.0.0.1:0\"\nadmin_token = \"admin-token-for-tests\"",
    );
    let gw = common::start(&text).await;
    assert!(gw.wait_bound(2, Duration::from_secs(10)).await);
    let start = Instant::now();
    let mut lc = LoadConfig::new(gw.brand_addr(), "bank", "pw1", 9_000);
    lc.rate = Some(300);
    lc.window = 200;
    lc.validity_period = "000000000020000R".into(); // 20 s
    lc.receipt_timeout = Duration::from_secs(8);
    let load = tokio::spawn(loadgen::run(lc));
    // While A loses receipts, the admin API shows it: A's on-time ratio for 4474
    // well under B's.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let q: serde_json::Value = reqwest::Client::new()
        .get(format!("http://{}/admin/quality", gw.ops_addr().unwrap()))
        .bearer_auth("admin-token-for-tests")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ratio = |c: &str| {
        q["series"]
            .as_array()
            .unwrap_or_else(|| panic!("no series: {q}"))
            .iter()
            .find(|s| s["carrier"] == c && s["prefix"] == "4474")
            .and_then(|s| s["on_time_ratio"].as_f64())
            .unwrap_or(f64::NAN)
    };
    eprintln!(
        "on-time ratio at 12 s: a {:.2}, b {:.2}",
        ratio("a"),
        ratio("b")
    );
    assert!(ratio("a") < 0.85 && ratio("b") > 0.95, "{q}");
    // A is mended after 16 s.
    tokio::time::sleep(Duration::from_secs(4)).await;
    a.set_rules(Vec::new());
    let r = tokio::time::timeout(Duration::from_secs(90), load)
        .await
        .unwrap()
        .unwrap()
        .unwrap();

    assert_eq!(r.accepted, 9_000, "refused: {:?}", r.rejected);
    let not_delivered: Vec<_> = r
        .ids
        .keys()
        .filter(|i| r.states.get(i) != Some(&DeliveryState::Delivered))
        .take(10)
        .collect();
    assert!(
        not_delivered.is_empty(),
        "not DELIVERED at the brand: {not_delivered:?}"
    );
    assert_eq!(
        (r.duplicate_receipts, r.missing_receipts),
        (0, 0),
        "one receipt each"
    );

    let (sa, sb) = (sends(&a), sends(&b));
    let fallbacks = sa.keys().filter(|i| sb.contains_key(i)).count();
    for (i, at_a) in &sa {
        assert_eq!(at_a.len(), 1, "message {i} sent twice to a");
        if let Some(at_b) = sb.get(i) {
            assert_eq!(at_b.len(), 1, "message {i} sent twice to b");
            // Never after the deadline (20 s after acceptance, which came before
            // the first send).
            assert!(at_b[0].duration_since(at_a[0]) < Duration::from_secs(20));
        }
    }
    let dropped = a.records().iter().filter(|r| r.receipt_dropped).count();
    assert!(
        fallbacks >= dropped,
        "{fallbacks} fallbacks for {dropped} lost receipts"
    );
    // A's share of first sends, by period since the start.
    let share = |from: u64, to: u64| {
        let (lo, hi) = (Duration::from_secs(from), Duration::from_secs(to));
        let inside = |t: &Instant| {
            let d = t.duration_since(start);
            d >= lo && d < hi
        };
        let na = sa.values().filter(|v| inside(&v[0])).count();
        let nb = sb
            .iter()
            .filter(|(i, v)| !sa.contains_key(i) && inside(&v[0]))
            .count();
        na as f64 / (na + nb).max(1) as f64
    };
    let (early, bad, mended) = (share(0, 3), share(10, 16), share(26, 30));
    eprintln!(
        "a's share: {early:.2} at first, {bad:.2} while losing receipts, {mended:.2} once mended; {fallbacks} fallbacks, {dropped} receipts lost"
    );
    assert!(bad < 0.20, "a still gets {bad:.2} while losing receipts");
    assert!(mended > 0.5, "a gets only {mended:.2} after it was mended");
    gw.shutdown().await;
    a.shutdown();
    b.shutdown();
}

/// Every attempt of an OTP got no receipt in time, with time left: the brand's
/// fallback URL gets a signed event, and the brand one receipt (UNKNOWN).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_attempts_silent_calls_the_fallback_url() {
    let silent = |c: &mut otpgw_sim::SimConfig| {
        c.receipt_delay = Duration::from_millis(20);
        c.rules = vec![Rule::parse("4474:100:drop").unwrap()];
    };
    let (a, b) = (common::sim(silent).await, common::sim(silent).await);
    let hooks = HookSink::start().await;
    let brand = format!(
        "webhook_secret = \"{BANK_HOOK_SECRET}\"\nfallback_url = \"{}\"\napi_key_hash = \"{}\"\n",
        hooks.url,
        otpgw_http::auth::sha256_hash(common::BANK_KEY)
    );
    let text = config(
        "127.0.0.1:0",
        &a,
        &b,
        &store_line("assure-fb"),
        500,
        "ordered",
        &brand,
    )
    // The receiver is on loopback: the operator allows it.
    .replace(
        "[ops]\n",
        &format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n{}\n[ops]\n",
            common::ALLOW_LOOPBACK_HOOKS
        ),
    );
    let gw = common::start(&text).await;
    assert!(gw.wait_bound(2, Duration::from_secs(10)).await);
    let mut lc = LoadConfig::new(gw.brand_addr(), "bank", "pw1", 20);
    lc.validity_period = "000000000030000R".into();
    lc.receipt_timeout = Duration::from_secs(4);
    let r = loadgen::run(lc).await.unwrap();
    assert_eq!(r.accepted, 20);
    assert_eq!(r.states.len(), 20, "a receipt for each");
    assert!(
        r.states.values().all(|s| *s == DeliveryState::Unknown),
        "{:?}",
        r.states
    );
    assert_eq!(r.duplicate_receipts, 0);
    let until = Instant::now() + Duration::from_secs(5);
    while hooks.got.lock().len() < 20 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for id in r.ids.values() {
        let got = hooks.for_id(id, BANK_HOOK_SECRET);
        assert_eq!(got.len(), 1, "one fallback event for {id}");
        let (signed, ev) = &got[0];
        assert!(signed);
        assert_eq!(ev["event"], "message.fallback");
        assert_eq!(ev["reason"], "no_receipt_in_time");
        assert!(ev["time_left_ms"].as_u64().unwrap() > 20_000, "{ev}");
    }
    // Each carrier was tried once per message.
    for s in [&a, &b] {
        assert!(sends(s).values().all(|v| v.len() == 1));
        assert_eq!(s.received(), 20);
    }
    gw.shutdown().await;
    a.shutdown();
    b.shutdown();
}

/// SIGKILL while fallbacks are under way (A never answers with a receipt, B's
/// receipts take 600 ms and are held while the gateway is down): after the restart
/// no OTP goes out a third time, and every acknowledged OTP gets one receipt
/// (DELIVERED from B, or UNKNOWN when its send to B was unconfirmed at the kill,
/// and so spent).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_fallback_sends_nothing_a_third_time() {
    let a = common::sim(|c| {
        c.receipt_delay = Duration::from_millis(20);
        c.rules = vec![Rule::parse("4474:100:drop").unwrap()];
    })
    .await;
    let b = common::sim(|c| c.receipt_delay = Duration::from_millis(600)).await;
    let dir = common::store_dir("assure-kill");
    let port = common::free_port();
    let store = format!("path = \"{}\"", dir.join("otpgw.redb").display());
    let text = config(
        &format!("127.0.0.1:{port}"),
        &a,
        &b,
        &store,
        1000,
        "ordered",
        "",
    );
    let mut gw = common::GwProc::start(&dir, port, &text).await;
    let mut lc = LoadConfig::new(gw.addr(), "bank", "pw1", 300);
    lc.rate = Some(300);
    lc.validity_period = "000000000100000R".into(); // 1 minute
    lc.receipt_timeout = Duration::from_millis(500);
    let load = tokio::spawn(loadgen::run(lc));
    // Kill once A's first receipts are overdue and sends to B are under way.
    let t0 = Instant::now();
    while b.received() < 50 && t0.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    gw.kill9();
    let first = load.await.unwrap().unwrap();
    let at_b_before = b.received();
    gw.restart().await;
    // Collect every receipt owed (B's arrive 600 ms after each send; A's never).
    let mut lc = LoadConfig::new(gw.addr(), "bank", "pw1", 0);
    lc.expect_receipts = Some(first.accepted);
    lc.receipt_timeout = Duration::from_secs(6);
    let later = loadgen::run(lc).await.unwrap();

    let mut got: HashMap<&str, Vec<DeliveryState>> = HashMap::new();
    for (i, s) in &first.states {
        got.entry(first.ids[i].as_str()).or_default().push(*s);
    }
    for (id, s) in &later.foreign_receipts {
        got.entry(id.as_str()).or_default().push(*s);
    }
    let missing: Vec<_> = first
        .ids
        .values()
        .filter(|id| !got.contains_key(id.as_str()))
        .take(10)
        .collect();
    let (sa, sb) = (sends(&a), sends(&b));
    if !missing.is_empty() {
        let idx: HashMap<&str, u64> = first.ids.iter().map(|(i, id)| (id.as_str(), *i)).collect();
        for id in &missing {
            let i = idx[id.as_str()];
            eprintln!(
                "{id} (index {i}): a {:?}, b {:?}",
                sa.get(&i).map(|v| v.len()),
                sb.get(&i).map(|v| v.len())
            );
        }
        eprintln!("{}", gw.logs());
    }
    assert!(
        missing.is_empty(),
        "acknowledged OTPs without a receipt: {missing:?}"
    );
    for (id, states) in &got {
        let mut d = states.clone();
        d.dedup();
        assert_eq!(d.len(), 1, "{id}: two different receipts {states:?}");
    }
    for (i, v) in sa.iter().chain(sb.iter()) {
        assert_eq!(v.len(), 1, "message {i} sent twice to one carrier");
    }
    let delivered = got
        .values()
        .filter(|s| s[0] == DeliveryState::Delivered)
        .count();
    eprintln!(
        "acked {}, at a {}, at b {} ({} before the kill), delivered {}, unknown {}",
        first.accepted,
        sa.len(),
        sb.len(),
        at_b_before,
        delivered,
        got.len() - delivered
    );
    assert!(delivered > 0);
    assert_eq!(gw.term(Duration::from_secs(10)).await, Some(0));
    a.shutdown();
    b.shutdown();
}

/// An OTP submitted without a receipt request (registered_delivery 0) goes out
/// once: the carrier is asked for a receipt anyway, so the gateway knows it
/// arrived. Before, no receipt came, and at the receipt timeout the same code went
/// out again through the other carrier.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_otp_without_a_receipt_request_is_sent_once() {
    let quick = |c: &mut otpgw_sim::SimConfig| c.receipt_delay = Duration::from_millis(20);
    let (a, b) = (common::sim(quick).await, common::sim(quick).await);
    let text = config(
        "127.0.0.1:0",
        &a,
        &b,
        &store_line("assure-rd0"),
        300,
        "ordered",
        "",
    );
    let gw = common::start(&text).await;
    assert!(gw.wait_bound(2, Duration::from_secs(10)).await);
    let mut lc = LoadConfig::new(gw.brand_addr(), "bank", "pw1", 20);
    lc.registered_delivery = 0;
    let r = loadgen::run(lc).await.unwrap();
    assert_eq!(r.accepted, 20);
    // Well past the receipt timeout: nothing more goes out.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(a.received() + b.received(), 20, "each OTP sent once");
    assert_eq!(b.received(), 0, "nothing went through the second carrier");
    assert!(r.states.is_empty(), "the brand asked for no receipt");
    gw.shutdown().await;
    a.shutdown();
    b.shutdown();
}

/// One carrier that never sends a receipt: each OTP's attempt times out and there
/// is no other carrier to send it through, so nothing is resent and
/// `otpgw_otp_fallbacks_total` stays 0 (it counted each as a fallback that never
/// happened). The brand gets one UNKNOWN receipt each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_fallback_is_counted_when_no_carrier_is_left() {
    let a = common::sim(|c| {
        c.receipt_delay = Duration::from_millis(20);
        c.rules = vec![Rule::parse("4474:100:drop").unwrap()];
    })
    .await;
    let text = common::config_text(
        "127.0.0.1:0",
        &[("a", a.addr())],
        "receipt_timeout_ms = 300\nreceipt_ids = \"hex_to_decimal\"",
    );
    let gw = common::start(&text).await;
    assert!(gw.wait_bound(1, Duration::from_secs(10)).await);
    let mut lc = LoadConfig::new(gw.brand_addr(), "bank", "pw1", 10);
    lc.receipt_timeout = Duration::from_secs(4);
    let r = loadgen::run(lc).await.unwrap();
    assert_eq!(r.accepted, 10);
    assert_eq!(r.states.len(), 10, "a receipt for each");
    assert!(
        r.states.values().all(|s| *s == DeliveryState::Unknown),
        "{:?}",
        r.states
    );
    assert_eq!(a.received(), 10, "nothing resent");
    let ops = gw.ops_addr().expect("ops listener on");
    let (_, m) = common::http_get(ops, "/metrics").await;
    assert!(
        m.contains("otpgw_otp_fallbacks_total{carrier=\"a\"} 0"),
        "{m}"
    );
    assert!(
        m.contains("otpgw_receipt_timeouts_total{carrier=\"a\"} 10"),
        "{m}"
    );
    gw.shutdown().await;
    a.shutdown();
}
