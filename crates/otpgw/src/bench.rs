//! `otpgw bench`: the brand-side load generator from the command line.

use std::net::SocketAddr;
use std::time::Duration;

use otpgw_sim::LoadConfig;

/// Run a load against `addr` and print a summary (or JSON).
#[allow(clippy::too_many_arguments)]
pub async fn run(
    addr: SocketAddr,
    system_id: &str,
    password: &str,
    binds: usize,
    window: usize,
    count: u64,
    rate: Option<u32>,
    text_len: usize,
    receipts: bool,
    json: bool,
) -> anyhow::Result<()> {
    let mut c = LoadConfig::new(addr, system_id, password, count);
    c.binds = binds;
    c.window = window;
    c.rate = rate;
    c.text_len = text_len;
    c.registered_delivery = u8::from(receipts);
    c.receipt_timeout = Duration::from_secs(30);
    let r = otpgw_sim::loadgen::run(c).await?;
    let q = |h: &hdrhistogram::Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    if json {
        println!(
            "{{\"sent\":{},\"accepted\":{},\"receipts\":{},\"missing_receipts\":{},\"duplicate_receipts\":{},\"submit_seconds\":{:.3},\"total_seconds\":{:.3},\"accept_rate\":{:.1},\"receipt_rate\":{:.1},\"resp_ms\":{{\"p50\":{:.3},\"p90\":{:.3},\"p99\":{:.3},\"p999\":{:.3},\"max\":{:.3}}},\"receipt_ms\":{{\"p50\":{:.3},\"p99\":{:.3},\"max\":{:.3}}},\"rejected\":{{{}}}}}",
            r.sent,
            r.accepted,
            r.receipts,
            r.missing_receipts,
            r.duplicate_receipts,
            r.submit_elapsed.as_secs_f64(),
            r.total_elapsed.as_secs_f64(),
            r.accept_rate(),
            r.receipt_rate(),
            q(&r.resp_latency_us, 0.5),
            q(&r.resp_latency_us, 0.9),
            q(&r.resp_latency_us, 0.99),
            q(&r.resp_latency_us, 0.999),
            r.resp_latency_us.max() as f64 / 1000.0,
            q(&r.receipt_latency_us, 0.5),
            q(&r.receipt_latency_us, 0.99),
            r.receipt_latency_us.max() as f64 / 1000.0,
            r.rejected
                .iter()
                .map(|(k, v)| format!("\"{k:#x}\":{v}"))
                .collect::<Vec<_>>()
                .join(",")
        );
    } else {
        println!(
            "sent {} accepted {} in {:.2}s: {:.0} msg/s; receipts {} ({:.0}/s over {:.2}s); missing {} duplicate {}",
            r.sent,
            r.accepted,
            r.submit_elapsed.as_secs_f64(),
            r.accept_rate(),
            r.receipts,
            r.receipt_rate(),
            r.total_elapsed.as_secs_f64(),
            r.missing_receipts,
            r.duplicate_receipts
        );
        println!(
            "submit->resp ms: p50 {:.3} p90 {:.3} p99 {:.3} p99.9 {:.3} max {:.3}; submit->receipt ms: p50 {:.1} p99 {:.1}; refused {:?}",
            q(&r.resp_latency_us, 0.5),
            q(&r.resp_latency_us, 0.9),
            q(&r.resp_latency_us, 0.99),
            q(&r.resp_latency_us, 0.999),
            r.resp_latency_us.max() as f64 / 1000.0,
            q(&r.receipt_latency_us, 0.5),
            q(&r.receipt_latency_us, 0.99),
            r.rejected
        );
    }
    Ok(())
}
