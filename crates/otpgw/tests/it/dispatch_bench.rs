//! Dispatch measurements (benchmarks, not tests: ignored by default, they print
//! figures and assert only that nothing was lost). Run with
//! `cargo test --release -p otpgw --test it dispatch_bench:: -- --ignored --nocapture --test-threads 1`
//! (or `benches/dispatch.sh`). Everything runs in one process on 127.0.0.1: the
//! gateway with its embedded store, the simulated carriers and the brands.

use crate::common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Raw, index_of};
use otpgw_node::Gateway;
use otpgw_proto::pdu::{self, SubmitFields};
use otpgw_proto::rusmpp::{Command, CommandStatus};
use otpgw_proto::status::{self, cmd};
use otpgw_sim::loadgen::{self, LoadConfig};

async fn start(text: &str) -> Gateway {
    let gw = common::start(text).await;
    assert!(gw.wait_bound(2, Duration::from_secs(10)).await);
    gw
}

/// A carrier that takes 2,000/s and answers ESME_RTHROTTLED above it; brands offer
/// 3,000/s and otpgw has no configured cap. Prints the carrier's intake and throttle
/// answers per second, and the time from the first throttle answer to a stable rate
/// (every later second within 85-105 % of the cap, throttle answers under 10 %).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn bench_throttle_settling() {
    const CAP: u32 = 2_000;
    let sim = common::sim(|c| {
        c.rate_cap = Some(CAP);
        c.receipt_delay = Duration::from_millis(5);
    })
    .await;
    let text = common::config_text("127.0.0.1:0", &[("sim", sim.addr())], "");
    let gw = start(&text).await;
    let mut lc = LoadConfig::new(gw.brand_addr(), "bank", "pw1", 36_000);
    lc.rate = Some(3_000);
    lc.registered_delivery = 0;
    let load = tokio::spawn(loadgen::run(lc));
    let t0 = Instant::now();
    let mut samples = vec![(0.0, 0usize, 0u64)];
    while !load.is_finished() || t0.elapsed() < Duration::from_secs(1) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        samples.push((t0.elapsed().as_secs_f64(), sim.received(), sim.throttled()));
        if t0.elapsed() > Duration::from_secs(60) {
            break;
        }
    }
    let report = load.await.unwrap().unwrap();
    // Let the queue drain, then check nothing was lost.
    let end = Instant::now() + Duration::from_secs(30);
    while sim.received() < 36_000 && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(report.accepted, 36_000);
    assert_eq!(sim.received(), 36_000, "every message reached the carrier");
    // Per-second figures over the offered-load period (12 s at 3,000/s).
    let per_sec: Vec<(usize, u64)> = samples
        .iter()
        .step_by(10)
        .collect::<Vec<_>>()
        .windows(2)
        .map(|w| (w[1].1 - w[0].1, w[1].2 - w[0].2))
        .collect();
    println!("carrier intake / throttle answers per second: {per_sec:?}");
    let first = samples.iter().find(|s| s.2 > 0).map(|s| s.0).unwrap_or(0.0);
    // Stable: from this 100 ms sample on, every sliding second (until the offered
    // load ends) took 85-105 % of the cap (the carrier counts whole seconds, this
    // sliding ones) and drew fewer throttle answers than 10 % of the cap.
    let load_end = samples
        .iter()
        .position(|s| s.1 + 1_000 >= 36_000)
        .unwrap_or(samples.len() - 1);
    let cap = f64::from(CAP);
    let ok = |i: usize| {
        let took = (samples[i + 10].1 - samples[i].1) as f64;
        let throttled = (samples[i + 10].2 - samples[i].2) as f64;
        (0.85 * cap..=1.05 * cap).contains(&took) && throttled < 0.1 * cap
    };
    let stable_from = (0..load_end.saturating_sub(10))
        .find(|&i| samples[i].0 >= first && (i..load_end.saturating_sub(10)).all(ok));
    let steady: Vec<&(usize, u64)> = per_sec.iter().skip(3).take(8).collect();
    let mean = steady.iter().map(|(n, _)| *n).sum::<usize>() as f64 / steady.len().max(1) as f64;
    match stable_from {
        Some(i) => println!(
            "first throttle answer at {first:.1} s; stable from {:.1} s: {:.1} s to settle; \
             mean intake over seconds 4-11: {mean:.0}/s = {:.0} % of the cap",
            samples[i].0,
            samples[i].0 - first,
            100.0 * mean / f64::from(CAP)
        ),
        None => println!(
            "first throttle answer at {first:.1} s; never stable by the 85-105 % rule; mean {mean:.0}/s"
        ),
    }
    println!("throttle answers in all: {}", sim.throttled());
    gw.shutdown().await;
    sim.shutdown();
}

/// Two carriers on one route, brands flat out; carrier a dies 1.5 s in (connections
/// dropped, new ones refused) and returns only after the run. Prints throughput and
/// the expired count; every message must reach a carrier.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn bench_one_of_two_carriers_dies_under_load() {
    const N: u64 = 60_000;
    let a = common::sim(|c| c.receipt_delay = Duration::from_millis(5)).await;
    let b = common::sim(|c| c.receipt_delay = Duration::from_millis(5)).await;
    let text = common::config_text(
        "127.0.0.1:0",
        &[("a", a.addr()), ("b", b.addr())],
        "failover_after_ms = 500",
    )
    .replace("window = 200", "window = 500");
    let gw = start(&text).await;
    let mut lc = LoadConfig::new(gw.brand_addr(), "bank", "pw1", N);
    lc.binds = 2;
    lc.window = 500;
    lc.receipt_timeout = Duration::from_secs(20);
    let t0 = Instant::now();
    let load = tokio::spawn(loadgen::run(lc));
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    a.set_accepting(false);
    a.drop_connections();
    let killed_at = t0.elapsed();
    let a_before = a.received();
    // Carrier b takes everything from here; wait until all reached a carrier.
    let end = Instant::now() + Duration::from_secs(90);
    while a.received() + b.received() < N as usize && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all_at_carriers = t0.elapsed();
    // Carrier a returns: the receipts it held for what it took come back.
    a.set_accepting(true);
    let report = tokio::time::timeout(Duration::from_secs(90), load)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let mut seen: HashSet<u64> = a.records().iter().map(|r| index_of(r.text())).collect();
    seen.extend(b.records().iter().map(|r| index_of(r.text())));
    assert_eq!(report.accepted, N);
    assert_eq!(seen.len() as u64, N, "messages lost");
    let expired = report
        .receipts_by_state
        .get("expired")
        .copied()
        .unwrap_or(0);
    println!(
        "carrier a killed at {:.2} s after taking {a_before}; b took {}; all {N} at a carrier after {:.2} s \
         = {:.0} msg/s through the failover; accepted {:.0} msg/s; receipts {} ({:.0}/s over {:.2} s); \
         expired {expired}; duplicates at carriers {}",
        killed_at.as_secs_f64(),
        b.received(),
        all_at_carriers.as_secs_f64(),
        N as f64 / all_at_carriers.as_secs_f64(),
        report.accept_rate(),
        report.receipts,
        report.receipt_rate(),
        report.total_elapsed.as_secs_f64(),
        a.received() + b.received() - N as usize,
    );
    gw.shutdown().await;
    a.shutdown();
    b.shutdown();
}

/// 100,000 bulk messages queued on one carrier capped at 5,000/s (a 20 s backlog),
/// then 500 OTPs at 100/s: prints OTP latency from acceptance (`submit_sm_resp`) to
/// arrival at the carrier, p50/p99/max.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn bench_otp_latency_behind_a_bulk_backlog() {
    let sim = common::sim(|c| c.receipt_delay = Duration::from_millis(5)).await;
    let mut text = common::config_text("127.0.0.1:0", &[("sim", sim.addr())], "rate_limit = 5000")
        .replace(
            "system_id = \"shop\"\n",
            "system_id = \"shop\"\ndefault_class = \"bulk\"\n",
        );
    text.push_str("\n[queue]\ncapacity = 300000\n");
    let gw = start(&text).await;
    let mut bulk = LoadConfig::new(gw.brand_addr(), "shop", "pw2", 100_000);
    bulk.priority_flag = 0;
    bulk.registered_delivery = 0;
    bulk.binds = 2;
    bulk.window = 500;
    let report = loadgen::run(bulk).await.unwrap();
    assert_eq!(report.accepted, 100_000, "{:?}", report.rejected);
    let backlog_start = gw.queued();

    let mut brand = Raw::connect(gw.brand_addr()).await;
    assert_eq!(
        brand.bind(cmd::BIND_TRANSCEIVER, "bank", "pw1", 1).await.1,
        status::ESME_ROK
    );
    let mut accepted_at: HashMap<String, Instant> = HashMap::new();
    for i in 0..500u32 {
        let dest = format!("4479{i:08}");
        let f = SubmitFields {
            priority_flag: 1,
            short_message: Bytes::from(format!("Your code is {:06}", i * 7919 % 1_000_000)),
            ..otpgw_testkit::sample::fields("BANK", &dest)
        };
        let seq = 100 + i;
        brand
            .send(&Command::new(
                CommandStatus::EsmeRok,
                seq,
                f.to_submit_sm().unwrap(),
            ))
            .await;
        loop {
            let c = brand.next_command().await.expect("response");
            if u32::from(c.id()) == cmd::SUBMIT_SM_RESP && c.sequence_number() == seq {
                assert_eq!(u32::from(c.status()), status::ESME_ROK);
                assert!(pdu::submit_sm_resp_id(&c).is_some());
                accepted_at.insert(dest, Instant::now());
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let backlog_end = gw.queued();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut lat_us: Vec<u64> = sim
        .records()
        .iter()
        .filter_map(|r| {
            accepted_at
                .get(&r.fields.dest.addr)
                .map(|t| r.at.saturating_duration_since(*t).as_micros() as u64)
        })
        .collect();
    assert_eq!(lat_us.len(), 500, "every OTP reached the carrier");
    lat_us.sort_unstable();
    let pct =
        |p: f64| lat_us[((lat_us.len() as f64 * p) as usize).min(lat_us.len() - 1)] as f64 / 1000.0;
    println!(
        "bulk backlog {backlog_start} at the first OTP, {backlog_end} at the last; \
         OTP accept -> carrier: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        pct(0.5),
        pct(0.9),
        pct(0.99),
        *lat_us.last().unwrap() as f64 / 1000.0
    );
    assert!(backlog_end > 50_000, "the backlog was still there");
    gw.shutdown().await;
    sim.shutdown();
}
