//! Session defences over real sockets: a client that never binds, one that sends a
//! PDU byte by byte (slowloris), a flood of unbound connections from one address, and
//! an idle bound session are each closed as configured, while a well-behaved brand
//! keeps its full throughput on its own session.

use crate::common;

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use common::Raw;
use otpgw_proto::status::{self, cmd};
use otpgw_sim::loadgen::{self, LoadConfig};

/// How long until the server closes `c` (reading and discarding PDUs).
async fn closed_after(c: &mut Raw, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let r = tokio::time::timeout(limit, async {
        while let Some(Ok(_)) = c.rd.next().await {}
    })
    .await;
    r.ok().map(|_| start.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_clients_are_closed_and_good_ones_keep_going() {
    let sim = common::sim(|_| {}).await;
    let text = common::config_text("127.0.0.1:0", &[("sim", sim.addr())], "").replace(
        "shutdown_grace_secs = 2\n",
        "shutdown_grace_secs = 2\nbind_timeout_secs = 1\npdu_timeout_secs = 1\n\
         idle_timeout_secs = 2\nmax_unbound_per_ip = 4\n",
    );
    let gw = common::start(&text).await;
    assert!(gw.wait_bound(2, Duration::from_secs(10)).await);

    let mut lc = LoadConfig::new(gw.brand_addr(), "shop", "pw2", 5_000);
    lc.rate = Some(1_000);
    lc.receipt_timeout = Duration::from_secs(10);
    let good = tokio::spawn(loadgen::run(lc));
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Never binds: closed after bind_timeout_secs.
    let mut lazy = Raw::connect(gw.brand_addr()).await;
    let t = closed_after(&mut lazy, Duration::from_secs(5)).await;
    assert!(t.is_some_and(|t| t >= Duration::from_millis(900)), "{t:?}");

    // Slowloris: a bind PDU one byte every 300 ms is closed after pdu_timeout_secs,
    // before it could finish (it would need 10 s).
    let mut slow = Raw::connect(gw.brand_addr()).await;
    let writer = tokio::spawn(async move {
        let pdu = [0u8, 0, 0, 33, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 1];
        for b in pdu.iter().cycle().take(40) {
            if slow.wr.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        slow
    });
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let mut slow = writer.await.unwrap();
    let t = closed_after(&mut slow, Duration::from_secs(2)).await;
    assert!(t.is_some(), "slow sender still connected");

    // A flood of unbound connections: four are held (until their bind timeout), the
    // rest are closed at once.
    let mut flood = Vec::new();
    for _ in 0..10 {
        flood.push(Raw::connect(gw.brand_addr()).await);
    }
    // Held ones stay open past 300 ms; refused ones are closed at once. Checked all
    // at the same time (the held ones' bind timeout is 1 s).
    let checks = flood
        .iter_mut()
        .map(|c| closed_after(c, Duration::from_millis(300)));
    let closed: Vec<bool> = futures_util::future::join_all(checks)
        .await
        .into_iter()
        .map(|t| t.is_some())
        .collect();
    assert_eq!(
        closed.iter().filter(|c| **c).count(),
        6,
        "over max_unbound_per_ip: {closed:?}"
    );
    drop(flood);

    // Idle: bound, then silent: closed after idle_timeout_secs.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let mut idle = Raw::connect(gw.brand_addr()).await;
    // The idle time counts from the bind's arrival, which is after `sent` (the
    // password check in between may take a while on a busy machine).
    let sent = std::time::Instant::now();
    assert_eq!(
        idle.bind(cmd::BIND_TRANSCEIVER, "bank", "pw1", 1).await.1,
        status::ESME_ROK
    );
    let t = closed_after(&mut idle, Duration::from_secs(5))
        .await
        .map(|_| sent.elapsed());
    assert!(
        t.is_some_and(|t| t >= Duration::from_millis(1_900)),
        "{t:?}"
    );

    // The good brand was untouched throughout.
    let report = good.await.unwrap().unwrap();
    assert_eq!(report.accepted, 5_000, "{:?}", report.rejected);
    assert_eq!(report.receipts, 5_000);
    assert!(
        report.accept_rate() > 900.0,
        "{:.0}/s",
        report.accept_rate()
    );
    gw.shutdown().await;
    sim.shutdown();
}
