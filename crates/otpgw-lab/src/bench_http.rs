//! `otpgw bench-http`: the HTTP API's load generator from the command line
//! ([`otpgw_sim::httpload`]): messages or verifications over keep-alive
//! connections, then a summary (text or `--json`).

use std::net::SocketAddr;
use std::time::Duration;

use crate::{Context, usage};
use otpgw_sim::httpload::{self, HttpLoadConfig, Kind};

/// `otpgw bench-http` options.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchHttpArgs {
    /// The gateway's HTTP API.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub host: SocketAddr,
    /// The brand's API key.
    #[arg(long, default_value = "demo-key")]
    pub key: String,
    /// Keep-alive connections, each sending one request after the other.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Requests to send (the most; `--duration` may end the run sooner).
    #[arg(long, default_value_t = 10_000)]
    pub count: u64,
    /// Stop after this many seconds.
    #[arg(long)]
    pub duration: Option<f64>,
    /// Requests per second offered (flat out when absent).
    #[arg(long)]
    pub rate: Option<u64>,
    /// Send verifications (POST /v1/verifications) instead of messages.
    #[arg(long)]
    pub verifications: bool,
    /// Messages ask for receipts as webhooks to this URL.
    #[arg(long)]
    pub receipt_url: Option<String>,
    /// Index of the first request (destination numbers follow it).
    #[arg(long, default_value_t = 0)]
    pub first_index: u64,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Run the load and print the summary.
pub async fn run(a: BenchHttpArgs) -> crate::Result<()> {
    if a.connections == 0 || a.count == 0 {
        return usage("--connections and --count must be at least 1");
    }
    let mut c = HttpLoadConfig::new(a.host, &a.key, a.count);
    c.connections = a.connections;
    c.rate = a.rate;
    c.duration = a
        .duration
        .map(|d| Duration::try_from_secs_f64(d).context("--duration"))
        .transpose()?;
    c.kind = if a.verifications {
        Kind::Verifications
    } else {
        Kind::Messages
    };
    c.receipt_url = a.receipt_url.clone();
    c.first_index = a.first_index;
    let r = httpload::run(c).await.context("HTTP load run")?;
    let q = |p: f64| r.latency_us.value_at_quantile(p) as f64 / 1000.0;
    let what = if a.verifications {
        "verifications"
    } else {
        "messages"
    };
    if a.json {
        let v = serde_json::json!({
            "kind": what,
            "connections": a.connections,
            "offered_rate": a.rate,
            "sent": r.sent,
            "ok": r.ok,
            "by_status": r.by_status,
            "failed": r.failed,
            "elapsed_s": r.elapsed.as_secs_f64(),
            "ok_per_s": r.ok_rate(),
            "latency_ms": {"p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "p999": q(0.999), "max": r.latency_us.max() as f64 / 1000.0},
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "{what}: {} connections, {}",
        a.connections,
        a.rate
            .map_or("flat out".into(), |x| format!("{x}/s offered"))
    );
    println!(
        "  sent {}, 2xx {} in {:.2} s = {:.0}/s; by status {:?}; no answer {}",
        r.sent,
        r.ok,
        r.elapsed.as_secs_f64(),
        r.ok_rate(),
        r.by_status,
        r.failed
    );
    println!(
        "  request -> answer: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
        q(0.5),
        q(0.9),
        q(0.99),
        q(0.999),
        r.latency_us.max() as f64 / 1000.0
    );
    Ok(())
}
