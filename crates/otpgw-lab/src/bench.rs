//! `otpgw bench`: the brand-side load generator from the command line. It drives
//! [`otpgw_sim::loadgen`], shows a progress bar on a terminal, and ends with a
//! summary (text or `--json`) and, on request, an SVG chart of the run.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::{Context, usage};
use hdrhistogram::Histogram;
use otpgw_proto::status;
use otpgw_sim::LoadConfig;
use otpgw_sim::loadgen::{LoadReport, Progress};

/// Text encoding of the generated messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Encoding {
    /// data_coding 0, one octet per character.
    Gsm,
    /// data_coding 8, UCS-2, two octets per character.
    Ucs2,
}

/// `otpgw bench` options.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// The gateway's brand listener.
    #[arg(long, default_value = "127.0.0.1:2775")]
    pub host: SocketAddr,
    #[arg(long, default_value = "demo")]
    pub system_id: String,
    #[arg(long, default_value = "demo")]
    pub password: String,
    /// Transceiver binds.
    #[arg(long, default_value_t = 1)]
    pub binds: usize,
    /// Outstanding submits per bind.
    #[arg(long, default_value_t = 100)]
    pub window: usize,
    /// Messages to send (the most; `--duration` may end the run sooner).
    #[arg(long, default_value_t = 10_000)]
    pub count: u64,
    /// Stop submitting after this many seconds.
    #[arg(long)]
    pub duration: Option<f64>,
    /// Messages per second offered across binds (flat out when absent).
    #[arg(long)]
    pub rate: Option<u32>,
    /// Percent of messages sent as OTP (priority_flag 1); the rest as bulk (0).
    #[arg(long, default_value_t = 100)]
    pub otp_percent: u8,
    #[arg(long, value_enum, default_value_t = Encoding::Gsm)]
    pub encoding: Encoding,
    /// Characters per message text (15 to 1,000; long texts go as several parts).
    #[arg(long, default_value_t = 20)]
    pub text_len: usize,
    /// Do not ask for receipts.
    #[arg(long)]
    pub no_receipts: bool,
    /// Write each PDU on its own (one write per PDU, as simple client libraries do)
    /// instead of batching what is queued.
    #[arg(long)]
    pub flush_each: bool,
    /// Stop waiting for receipts this many seconds after the last one.
    #[arg(long, default_value_t = 30)]
    pub receipt_timeout_secs: u64,
    /// Print the summary as JSON (no progress bar).
    #[arg(long)]
    pub json: bool,
    /// Write an SVG chart of throughput and latency percentiles per second here.
    #[arg(long)]
    pub chart: Option<PathBuf>,
    /// No progress bar (it is also hidden when stderr is not a terminal).
    #[arg(long)]
    pub no_progress: bool,
}

impl BenchArgs {
    fn load_config(&self) -> crate::Result<LoadConfig> {
        if !(15..=1000).contains(&self.text_len) {
            return usage("--text-len must be 15 to 1000 characters");
        }
        if self.otp_percent > 100 {
            return usage("--otp-percent must be 0 to 100");
        }
        if self.binds == 0 || self.window == 0 {
            return usage("--binds and --window must be at least 1");
        }
        let mut c = LoadConfig::new(self.host, &self.system_id, &self.password, self.count);
        c.binds = self.binds;
        c.window = self.window;
        c.rate = self.rate;
        c.text_len = self.text_len;
        c.otp_percent = self.otp_percent;
        c.data_coding = match self.encoding {
            Encoding::Gsm => 0,
            Encoding::Ucs2 => 8,
        };
        c.duration = self
            .duration
            .map(|d| Duration::try_from_secs_f64(d).context("--duration"))
            .transpose()?;
        c.registered_delivery = u8::from(!self.no_receipts);
        c.flush_each = self.flush_each;
        c.receipt_timeout = Duration::from_secs(self.receipt_timeout_secs);
        Ok(c)
    }

    fn describe(&self) -> String {
        format!(
            "{} bind(s) x window {}{}, {} messages{}, {}% OTP, {:?} {} chars, {}, receipts {}",
            self.binds,
            self.window,
            if self.flush_each {
                " (one PDU per write)"
            } else {
                ""
            },
            self.count,
            self.duration
                .map(|d| format!(" or {d} s"))
                .unwrap_or_default(),
            self.otp_percent,
            self.encoding,
            self.text_len,
            self.rate
                .map_or("flat out".to_string(), |r| format!("{r} msg/s offered")),
            if self.no_receipts { "off" } else { "on" },
        )
    }
}

/// Run a load against the gateway and print a summary (or JSON).
pub async fn run(args: BenchArgs) -> crate::Result<()> {
    let cfg = args.load_config()?;
    let progress = Arc::new(Progress::default());
    let bar = (!args.json && !args.no_progress).then(|| progress_bar(&args, progress.clone()));
    let r = otpgw_sim::loadgen::run_with_progress(cfg, progress).await;
    if let Some((bar, task)) = bar {
        task.abort();
        bar.finish_and_clear();
    }
    let r = r.context("load run")?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json_summary(&args, &r))?
        );
    } else {
        print!("{}", text_summary(&args, &r));
    }
    if let Some(path) = &args.chart {
        chart(path, &r).context(&format!("writing chart {}", path.display()))?;
        if !args.json {
            println!("chart: {}", path.display());
        }
    }
    Ok(())
}

/// A bar over the messages to send, refreshed five times a second by a task.
fn progress_bar(
    args: &BenchArgs,
    p: Arc<Progress>,
) -> (indicatif::ProgressBar, tokio::task::JoinHandle<()>) {
    let bar = indicatif::ProgressBar::new(args.count);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {pos}/{len} sent  {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let b = bar.clone();
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        let mut last = (0u64, tokio::time::Instant::now());
        loop {
            tick.tick().await;
            let accepted = p.accepted.load(Ordering::Relaxed);
            let now = tokio::time::Instant::now();
            let dt = now.duration_since(last.1).as_secs_f64().max(1e-3);
            let rate = (accepted - last.0.min(accepted)) as f64 / dt;
            last = (accepted, now);
            b.set_position(p.sent.load(Ordering::Relaxed));
            b.set_message(format!(
                "accepted {accepted} ({rate:.0}/s)  refused {}  receipts {}",
                p.refused.load(Ordering::Relaxed),
                p.receipts.load(Ordering::Relaxed)
            ));
        }
    });
    (bar, task)
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() {
        return 0.0;
    }
    h.value_at_quantile(q) as f64 / 1000.0
}

fn percentiles(h: &Histogram<u64>) -> serde_json::Value {
    serde_json::json!({
        "p50": ms(h, 0.5), "p90": ms(h, 0.9), "p99": ms(h, 0.99),
        "p999": ms(h, 0.999), "max": if h.is_empty() { 0.0 } else { h.max() as f64 / 1000.0 },
    })
}

fn json_summary(args: &BenchArgs, r: &LoadReport) -> serde_json::Value {
    let refused: serde_json::Map<String, serde_json::Value> = r
        .rejected
        .iter()
        .map(|(k, v)| (status_label(*k), serde_json::json!(v)))
        .collect();
    serde_json::json!({
        "run": args.describe(),
        "sent": r.sent,
        "accepted": r.accepted,
        "refused": refused,
        "receipts": r.receipts,
        "missing_receipts": r.missing_receipts,
        "duplicate_receipts": r.duplicate_receipts,
        "unknown_receipts": r.unknown_receipts,
        "submit_seconds": r.submit_elapsed.as_secs_f64(),
        "total_seconds": r.total_elapsed.as_secs_f64(),
        "accept_rate": r.accept_rate(),
        "receipt_rate": r.receipt_rate(),
        "resp_ms": percentiles(&r.resp_latency_us),
        "receipt_ms": percentiles(&r.receipt_latency_us),
        "delivered_ms": percentiles(&r.delivered_latency_us),
        "delivered_within_10s": delivered_within(r, 10),
        "per_second": r.per_second,
    })
}

/// Share of accepted messages whose (first) receipt said DELIVERED within `secs`.
fn delivered_within(r: &LoadReport, secs: u64) -> f64 {
    let n = r.delivered_latency_us.count_between(0, secs * 1_000_000);
    n as f64 / r.accepted.max(1) as f64
}

/// "ESME_RTHROTTLED (0x58)"; a response that never came is "no response".
fn status_label(s: u32) -> String {
    if s == u32::MAX {
        "no response".to_string()
    } else {
        match status::name(s) {
            "other" => format!("status {s:#x}"),
            n => format!("ESME_R{} ({s:#x})", n.to_uppercase()),
        }
    }
}

fn text_summary(args: &BenchArgs, r: &LoadReport) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(o, "otpgw bench: {}", args.describe());
    let refused: u64 = r.rejected.values().sum();
    let _ = writeln!(
        o,
        "sent {}, accepted {} in {:.2} s = {:.0} msg/s, refused {}",
        r.sent,
        r.accepted,
        r.submit_elapsed.as_secs_f64(),
        r.accept_rate(),
        refused
    );
    if !args.no_receipts {
        let _ = writeln!(
            o,
            "receipts {} in {:.2} s = {:.0} msg/s end to end; missing {}, duplicate {}, unknown {}",
            r.receipts,
            r.total_elapsed.as_secs_f64(),
            r.receipt_rate(),
            r.missing_receipts,
            r.duplicate_receipts,
            r.unknown_receipts
        );
    }
    let _ = writeln!(
        o,
        "latency ms          {:>9} {:>9} {:>9} {:>9} {:>9}",
        "p50", "p90", "p99", "p99.9", "max"
    );
    let mut row = |name: &str, h: &Histogram<u64>| {
        let max = if h.is_empty() {
            0.0
        } else {
            h.max() as f64 / 1000.0
        };
        let _ = writeln!(
            o,
            "{name:<19} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
            ms(h, 0.5),
            ms(h, 0.9),
            ms(h, 0.99),
            ms(h, 0.999),
            max
        );
    };
    row("submit -> resp", &r.resp_latency_us);
    if !args.no_receipts {
        row("submit -> receipt", &r.receipt_latency_us);
        row("submit -> DELIVRD", &r.delivered_latency_us);
        let _ = writeln!(
            o,
            "delivered within 10 s: {:.2} % of accepted",
            100.0 * delivered_within(r, 10)
        );
    }
    for (s, n) in &r.rejected {
        let _ = writeln!(o, "refused {}: {n}", status_label(*s));
    }
    o
}

/// Two panels: messages per second (accepted, receipts), and the submit -> resp
/// percentiles of each second.
fn chart(path: &std::path::Path, r: &LoadReport) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;
    let secs = r.per_second.len().max(1) as u32;
    let root = SVGBackend::new(path, (1000, 720)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(360);

    let max_rate = r
        .per_second
        .iter()
        .map(|s| s.accepted.max(s.receipts))
        .max()
        .unwrap_or(1)
        .max(1) as f64
        * 1.1;
    let mut c = ChartBuilder::on(&top)
        .caption("throughput (messages per second)", ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0u32..secs, 0f64..max_rate)?;
    c.configure_mesh()
        .x_desc("second")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()?;
    let series = |f: fn(&otpgw_sim::loadgen::SecondStats) -> f64| {
        r.per_second
            .iter()
            .map(move |s| (s.second, f(s)))
            .collect::<Vec<_>>()
    };
    c.draw_series(LineSeries::new(series(|s| s.accepted as f64), &BLUE))?
        .label("accepted")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    c.draw_series(LineSeries::new(series(|s| s.receipts as f64), &GREEN))?
        .label("receipts")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], GREEN));
    c.configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;

    let max_ms = r
        .per_second
        .iter()
        .map(|s| s.resp_p999_ms)
        .fold(0.0, f64::max)
        .max(0.1)
        * 1.1;
    let mut c = ChartBuilder::on(&bottom)
        .caption(
            "submit -> submit_sm_resp (ms), per second",
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0u32..secs, 0f64..max_ms)?;
    c.configure_mesh().x_desc("second").draw()?;
    for (label, colour, f) in [
        (
            "p50",
            BLUE,
            (|s| s.resp_p50_ms) as fn(&otpgw_sim::loadgen::SecondStats) -> f64,
        ),
        ("p99", MAGENTA, |s| s.resp_p99_ms),
        ("p99.9", RED, |s| s.resp_p999_ms),
    ] {
        c.draw_series(LineSeries::new(series(f), &colour))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour));
    }
    c.configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        a: BenchArgs,
    }

    fn args(extra: &[&str]) -> BenchArgs {
        Cli::parse_from(std::iter::once("bench").chain(extra.iter().copied())).a
    }

    #[test]
    fn options_reach_the_load_config() {
        let c = args(&[
            "--binds",
            "3",
            "--window",
            "7",
            "--count",
            "50",
            "--otp-percent",
            "80",
            "--encoding",
            "ucs2",
            "--text-len",
            "40",
            "--duration",
            "2.5",
            "--rate",
            "900",
        ])
        .load_config()
        .expect("valid");
        assert_eq!((c.binds, c.window, c.count), (3, 7, 50));
        assert_eq!((c.otp_percent, c.data_coding, c.text_len), (80, 8, 40));
        assert_eq!(c.duration, Some(Duration::from_millis(2500)));
        assert_eq!(c.rate, Some(900));
        assert_eq!(c.registered_delivery, 1);
    }

    #[test]
    fn bad_options_are_refused() {
        for bad in [
            &["--text-len", "10"][..],
            &["--text-len", "1001"],
            &["--otp-percent", "101"],
            &["--binds", "0"],
            &["--duration=-1"],
        ] {
            assert!(args(bad).load_config().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn summary_names_refusals_and_chart_is_svg() {
        let mut h = Histogram::new_with_bounds(1, 60_000_000, 3).expect("bounds");
        for v in [100, 200, 300, 5_000] {
            h.record(v).expect("in range");
        }
        let r = LoadReport {
            sent: 5,
            accepted: 4,
            rejected: [(status::ESME_RTHROTTLED, 1)].into_iter().collect(),
            receipts: 4,
            receipts_by_state: Default::default(),
            unknown_receipts: 0,
            duplicate_receipts: 0,
            missing_receipts: 0,
            ids: Default::default(),
            refused: Default::default(),
            states: Default::default(),
            submit_elapsed: Duration::from_secs(1),
            total_elapsed: Duration::from_secs(2),
            resp_latency_us: h.clone(),
            receipt_latency_us: h.clone(),
            delivered_latency_us: h,
            foreign_receipts: vec![],
            receipts_by_id: Default::default(),
            first_accept: None,
            last_accept: None,
            longest_accept_gap: Duration::ZERO,
            longest_accept_gap_from: None,
            per_second: vec![
                otpgw_sim::loadgen::SecondStats {
                    second: 0,
                    accepted: 3,
                    refused: 1,
                    receipts: 2,
                    resp_p50_ms: 0.2,
                    resp_p99_ms: 5.0,
                    resp_p999_ms: 5.0,
                },
                otpgw_sim::loadgen::SecondStats {
                    second: 1,
                    accepted: 1,
                    receipts: 2,
                    ..Default::default()
                },
            ],
        };
        let a = args(&["--count", "5"]);
        let t = text_summary(&a, &r);
        assert!(t.contains("refused ESME_RTHROTTLED (0x58): 1"), "{t}");
        assert!(t.contains("accepted 4 in 1.00 s = 4 msg/s"), "{t}");
        let j = json_summary(&a, &r);
        assert_eq!(j["refused"]["ESME_RTHROTTLED (0x58)"], 1);
        assert_eq!(j["per_second"][1]["receipts"], 2);
        assert!((j["resp_ms"]["max"].as_f64().expect("number") - 5.0).abs() < 0.01);
        let dir = std::env::temp_dir().join(format!("otpgw-chart-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("c.svg");
        chart(&path, &r).expect("chart");
        let svg = std::fs::read_to_string(&path).expect("read");
        assert!(
            svg.starts_with("<svg") && svg.contains("polyline"),
            "not an SVG chart"
        );
        assert!(
            svg.contains("receipts") && svg.contains("p99.9"),
            "legend missing"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
