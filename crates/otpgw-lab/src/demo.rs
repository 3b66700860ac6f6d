//! `otpgw demo`: the gateway with an in-process simulated carrier, listening for
//! brands on 127.0.0.1:2775 (SMPP, `demo`/`demo`) and 127.0.0.1:8080 (HTTP API,
//! `Authorization: Bearer demo-key`, verifications on). It first pushes a self-test
//! load through itself and prints what happened, then runs until interrupted.

use std::net::SocketAddr;
use std::time::Duration;

use otpgw_sim::{LoadConfig, Outcomes, SimConfig, SimHandle};

use otpgw_node::Config;
use otpgw_node::Gateway;

/// Demo options.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub listen: SocketAddr,
    /// The HTTP API's address.
    pub http: SocketAddr,
    /// Messages in the self-test (0: none).
    pub selftest: u64,
    /// Exit after the self-test instead of waiting for Ctrl-C.
    pub exit_after_selftest: bool,
}

/// The demo brand's HTTP API key (the demo only).
pub const DEMO_KEY: &str = "demo-key";

/// The config the demo runs with: one brand, one simulated carrier on `carrier`,
/// the HTTP API on `http` with a verification secret fresh for this run.
pub fn demo_config(
    listen: SocketAddr,
    http: SocketAddr,
    carrier: SocketAddr,
    store: &std::path::Path,
) -> Config {
    let store = store.display();
    let key_hash = otpgw_http::auth::sha256_hash(DEMO_KEY);
    let mut secret = [0u8; 32];
    // Without randomness the demo still runs, with a fixed (demo-only) secret.
    let _ = getrandom::fill(&mut secret);
    let secret: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let text = format!(
        r#"
[server]
listen = "{listen}"
[store]
path = "{store}"
[ops]
enabled = false
[http]
listen = "{http}"
[verify]
secret = "{secret}"
sender = "Demo"
[[brand]]
system_id = "demo"
password_hash = "$argon2id$v=19$m=19456,t=2,p=1$anGSFxH6/AWb3F6Kk0Mbsw$IWAPpx5SQ2/McJPwYGogMh0oLQBCwWT3oCcKM2NX5Gg" # "demo"
api_key_hash = "{key_hash}"
webhook_secret = "demo-webhook-secret"
[[carrier]]
name = "sim"
address = "{carrier}"
system_id = "otpgw"
password = "secret"
binds = 2
window = 500
[routes]
default = ["sim"]
"#
    );
    match Config::parse(&text, "demo") {
        Ok(c) => c,
        Err(e) => unreachable!("built-in demo config is valid: {e}"),
    }
}

/// Run the demo.
pub async fn run(opts: DemoOptions) -> crate::Result<()> {
    let mut sim_cfg = SimConfig::new(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    sim_cfg.credentials = Some(("otpgw".into(), "secret".into()));
    sim_cfg.receipt_delay = Duration::from_millis(50);
    sim_cfg.outcomes = Outcomes {
        delivered: 95,
        undeliverable: 4,
        expired: 1,
    };
    let sim = SimHandle::start(sim_cfg).await?;
    println!("simulated carrier listening on {}", sim.addr());
    // The demo runs on the durable embedded store, in a fresh directory of its own.
    let dir = std::env::temp_dir().join(format!("otpgw-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = dir.join("otpgw.redb");
    println!("embedded store at {}", store.display());
    let gw = Gateway::start(&demo_config(opts.listen, opts.http, sim.addr(), &store)).await?;
    if !gw.wait_bound(2, Duration::from_secs(10)).await {
        return Err(crate::LabError::Failed(
            "the gateway could not bind to the simulated carrier".into(),
        ));
    }
    println!(
        "otpgw listening for brands on {} (system_id \"demo\", password \"demo\")",
        gw.brand_addr()
    );
    println!("carrier binds up: {:?}", gw.binds_up());
    if let Some(h) = gw.http_addr() {
        println!(
            "HTTP API on http://{h} (Authorization: Bearer {DEMO_KEY}); try:\n  curl -s -H 'Authorization: Bearer {DEMO_KEY}' -H 'Content-Type: application/json' -d '{{\"to\":\"+447400900123\"}}' http://{h}/v1/verifications"
        );
    }

    if opts.selftest > 0 {
        println!(
            "self-test: a brand binds and submits {} OTPs asking for receipts...",
            opts.selftest
        );
        let mut lc = LoadConfig::new(gw.brand_addr(), "demo", "demo", opts.selftest);
        lc.binds = 2;
        lc.window = 500;
        lc.receipt_timeout = Duration::from_secs(20);
        let r = otpgw_sim::loadgen::run(lc).await?;
        print_report(&r, &sim);
    }
    if opts.exit_after_selftest {
        gw.shutdown().await;
        sim.shutdown();
        let _ = std::fs::remove_dir_all(&dir);
        return Ok(());
    }
    println!(
        "running; point any SMPP client at {} (Ctrl-C to stop)",
        gw.brand_addr()
    );
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    tick.tick().await;
    // The simulated phones' screens: texts that reach the carrier from now on
    // (standard output, not the gateway's log), a few per second at most.
    let mut shown = sim.received();
    let mut phones = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = phones.tick() => {
                let recs = sim.records();
                for r in recs.iter().skip(shown).take(5) {
                    println!("  phone +{} got: {}", r.fields.dest.addr, r.shown_text());
                }
                shown = recs.len();
            }
            _ = tick.tick() => {
                println!(
                    "queued {}, in flight {}, receipts waiting for brands {}, carrier received {}, store {} KiB",
                    gw.queued(), gw.in_flight(), gw.receipts_waiting(), sim.received(),
                    gw.embedded().map_or(0, |e| e.file_size() / 1024)
                );
            }
        }
    }
    println!("stopping...");
    gw.shutdown().await;
    sim.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Print a load report for people.
pub fn print_report(r: &otpgw_sim::LoadReport, sim: &SimHandle) {
    let p = |h: &hdrhistogram::Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "  accepted {} of {} in {:.2}s ({:.0} msg/s); refused {:?}",
        r.accepted,
        r.sent,
        r.submit_elapsed.as_secs_f64(),
        r.accept_rate(),
        r.rejected
    );
    println!(
        "  receipts {} ({:?}); missing {}, duplicate {}, unknown {}",
        r.receipts,
        r.receipts_by_state,
        r.missing_receipts,
        r.duplicate_receipts,
        r.unknown_receipts
    );
    println!(
        "  submit_sm -> submit_sm_resp: p50 {:.2} ms, p99 {:.2} ms; submit_sm -> receipt: p50 {:.1} ms, p99 {:.1} ms",
        p(&r.resp_latency_us, 0.5),
        p(&r.resp_latency_us, 0.99),
        p(&r.receipt_latency_us, 0.5),
        p(&r.receipt_latency_us, 0.99)
    );
    println!(
        "  the simulated carrier received {} messages",
        sim.received()
    );
}
