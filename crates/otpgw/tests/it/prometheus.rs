//! A real Prometheus (Debian package `prometheus`, installed by scripts/test.sh)
//! scrapes otpgw during an end-to-end run. promtool checks the shipped config and
//! rules; then every expression of the shipped Grafana dashboard, and the signal of
//! every shipped alert rule, must return data from the Prometheus API.

use crate::common;

use std::process::{Command, Stdio};
use std::time::Duration;

use otpgw_sim::loadgen::{self, LoadConfig};
use otpgw_sim::smsc::Outcomes;

const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy");

fn have(bin: &str) -> bool {
    Command::new(bin)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    common::http_get(addr, path).await.1
}

/// Series returned by an instant query, and the first series' value.
async fn query_values(prom: std::net::SocketAddr, q: &str) -> (usize, String) {
    let body = http_get(prom, &format!("/api/v1/query?query={}", encode(q))).await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    assert_eq!(v["status"], "success", "query failed: {q}: {body}");
    let r = v["data"]["result"].as_array().cloned().unwrap_or_default();
    let first = r
        .first()
        .map(|s| {
            format!(
                "{} = {}",
                s["metric"],
                s["value"][1].as_str().unwrap_or("?")
            )
        })
        .unwrap_or_default();
    (r.len(), first)
}

async fn query(prom: std::net::SocketAddr, q: &str) -> usize {
    query_values(prom, q).await.0
}

/// The signal of an alert expression: the expression without its final comparison.
fn signal(expr: &str) -> String {
    let e = expr.trim();
    for op in [" == ", " != ", " >= ", " <= ", " > ", " < "] {
        if let Some(i) = e.rfind(op) {
            let rhs = e[i + op.len()..].trim();
            if rhs.parse::<f64>().is_ok() {
                return e[..i].trim().to_string();
            }
        }
    }
    e.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_and_every_dashboard_and_alert_expression_has_data() {
    if !have("prometheus") || !have("promtool") {
        assert!(
            std::env::var_os("OTPGW_REQUIRE_PROMETHEUS").is_none(),
            "prometheus is required (scripts/test.sh installs it)"
        );
        eprintln!("SKIPPED: prometheus/promtool not installed; run scripts/test.sh");
        return;
    }
    // The shipped files are valid.
    let ok = |args: &[&str]| {
        let o = Command::new("promtool").args(args).output().unwrap();
        assert!(
            o.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    };
    ok(&[
        "check",
        "config",
        &format!("{DEPLOY}/prometheus/prometheus.yml"),
    ]);
    ok(&["check", "rules", &format!("{DEPLOY}/prometheus/alerts.yml")]);

    // otpgw in front of a carrier whose receipts include every outcome.
    let sim = common::sim(|c| {
        c.outcomes = Outcomes {
            delivered: 80,
            undeliverable: 10,
            expired: 10,
        };
        c.receipt_delay = Duration::from_millis(20);
        c.rate_cap = Some(1_800); // below the offered 2,000/s: some throttling and retries
    })
    .await;
    let (brands, sections) = common::http_pieces(0);
    // A guard that judges codes at once, so a short attack is blocked.
    let sections = format!("{sections}[verify.fraud]\ngrace_secs = 0\nmin_samples = 3\n");
    let store = format!(
        "path = \"{}\"",
        common::store_dir("prom-store").join("otpgw.redb").display()
    );
    let text = common::config_text_full(
        "127.0.0.1:0",
        &[("sim", sim.addr())],
        "",
        &store,
        [&brands[0], &brands[1]],
        &sections,
    );
    // A brand TLS listener too: the certificate expiry alert has a signal.
    let (cert, key) = common::self_signed(&common::store_dir("prom-tls"), "otpgw");
    let text = text.replacen(
        "[server]\n",
        &format!(
            "[server]\ntls_listen = \"127.0.0.1:0\"\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
            cert.display(),
            key.display()
        ),
        1,
    );
    let gw = common::start(&text).await;
    assert!(gw.wait_bound(2, Duration::from_secs(10)).await);
    let ops = gw.ops_addr().unwrap();

    // A Prometheus scraping it every second, with the shipped rules.
    let dir = common::store_dir("prom");
    let port = common::free_port();
    let cfg = dir.join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {DEPLOY}/prometheus/alerts.yml\nscrape_configs:\n  - job_name: otpgw\n    static_configs:\n      - targets: [\"{ops}\"]\n"
        ),
    )
    .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _prom = Kill(
        Command::new("prometheus")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let prom = std::net::SocketAddr::from(([127, 0, 0, 1], port));

    // Over HTTP, spread over the run so rates have samples: verifications (three
    // in four approved) and messages with webhooks.
    let base = format!("http://{}", gw.http_addr().unwrap());
    let hooks = common::HookSink::start().await;
    let verify = {
        let (sim, hooks) = (sim.clone(), hooks.clone());
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut ids = Vec::new();
            for i in 0..24u32 {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let to = format!("4474009{:05}", 70_000 + i);
                let r = http
                    .post(format!("{base}/v1/verifications"))
                    .bearer_auth(common::BANK_KEY)
                    .json(&serde_json::json!({"to": format!("+{to}")}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 201);
                let id = r.json::<serde_json::Value>().await.unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_string();
                ids.push(id.clone());
                let code = common::code_sent_to(&sim, &to, 0).await;
                let typed = if i % 4 == 0 {
                    "000000".to_string()
                } else {
                    code
                };
                let r = http
                    .post(format!("{base}/v1/verifications/{id}/check"))
                    .bearer_auth(common::BANK_KEY)
                    .json(&serde_json::json!({ "code": typed }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                let r = http
                    .post(format!("{base}/v1/messages"))
                    .bearer_auth(common::BANK_KEY)
                    .json(&serde_json::json!({"to": format!("+{to}"), "from": "BANK", "text": "hello", "receipt_url": hooks.url}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 202);
                ids.push(
                    r.json::<serde_json::Value>().await.unwrap()["id"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                );
            }
            // A premium-rate number is refused; an attack on random numbers
            // of one prefix (codes nobody types) is blocked once judged.
            let create = |to: String| {
                let (http, base) = (http.clone(), base.clone());
                async move {
                    let r = http
                        .post(format!("{base}/v1/verifications"))
                        .bearer_auth(common::BANK_KEY)
                        .json(&serde_json::json!({ "to": to }))
                        .send()
                        .await
                        .unwrap();
                    let status = r.status().as_u16();
                    let v: serde_json::Value = r.json().await.unwrap_or_default();
                    (
                        status,
                        v["error"]["code"].as_str().unwrap_or("").to_string(),
                    )
                }
            };
            assert_eq!(
                create("+449098790000".into()).await,
                (400, "number_type_refused".to_string())
            );
            let mut attack_sent = 0u32;
            for i in 0..4 {
                assert_eq!(create(format!("+4479110000{i:02}")).await.0, 201);
                attack_sent += 1;
            }
            let mut blocked = (0, String::new());
            for i in 0..8 {
                tokio::time::sleep(Duration::from_secs(1)).await;
                blocked = create(format!("+4479110001{i:02}")).await;
                if blocked.0 == 429 {
                    break;
                }
                attack_sent += 1;
            }
            assert_eq!(blocked, (429, "prefix_blocked".to_string()));
            (ids, attack_sent)
        })
    };
    // Traffic: OTPs with receipts, and a few refused ones (bad destination).
    let mut lc = LoadConfig::new(gw.brand_addr(), "bank", "pw1", 12_000);
    lc.rate = Some(2_000);
    lc.receipt_timeout = Duration::from_secs(5);
    let load = tokio::spawn(loadgen::run(lc));
    let mut bad = LoadConfig::new(gw.brand_addr(), "shop", "pw2", 3);
    bad.source = String::new(); // refused: ESME_RINVSRCADR
    bad.receipt_timeout = Duration::from_millis(100);
    let refused = loadgen::run(bad).await.unwrap();
    assert_eq!(refused.accepted, 0);
    let report = load.await.unwrap().unwrap();
    assert_eq!(report.accepted, 12_000);
    let (http_ids, attack_sent) = verify.await.unwrap();
    // No number, message id or verification id in any label.
    let metrics = http_get(ops, "/metrics").await;
    assert!(
        !metrics.contains("4474"),
        "a phone number leaked into /metrics"
    );
    for id in &http_ids {
        assert!(!metrics.contains(id.as_str()), "an id leaked into /metrics");
    }
    tokio::time::sleep(Duration::from_secs(3)).await;

    assert!(
        query(prom, "up{job=\"otpgw\"} == 1").await >= 1,
        "Prometheus is not scraping otpgw"
    );
    let dash: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{DEPLOY}/grafana/otpgw-dashboard.json")).unwrap(),
    )
    .unwrap();
    let mut exprs: Vec<String> = Vec::new();
    for p in dash["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            exprs.push(t["expr"].as_str().unwrap().to_string());
        }
    }
    let rules = std::fs::read_to_string(format!("{DEPLOY}/prometheus/alerts.yml")).unwrap();
    let alert_signals: Vec<String> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("expr: "))
        .map(signal)
        .collect();
    assert_eq!(alert_signals.len(), 13);
    let mut empty = Vec::new();
    for q in exprs.iter().chain(alert_signals.iter()) {
        let (n, first) = query_values(prom, q).await;
        eprintln!("{n:>3} series  {q}  ->  {first}");
        if n == 0 {
            empty.push(q.clone());
        }
    }
    assert!(empty.is_empty(), "expressions without data: {empty:#?}");
    // The run's expiries (one receipt in ten says EXPIRED) set off the shipped
    // alert watching them: pending (its `for:` is a minute), then firing.
    let until = std::time::Instant::now() + Duration::from_secs(15);
    let mut seen = 0;
    while seen == 0 && std::time::Instant::now() < until {
        seen = query(prom, "ALERTS{alertname=\"OtpgwExpiredMessages\"}").await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(seen, 1, "OtpgwExpiredMessages is not pending or firing");
    // Conversion: three codes in four were typed back right, every approval
    // counted against the carrier that sent the code (the counters themselves: a
    // ratio of rates over a few sparse samples depends on when each series began).
    let count = |q: &'static str| async move {
        let (_, v) = query_values(prom, q).await;
        v.rsplit(" = ")
            .next()
            .and_then(|x| x.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let until = std::time::Instant::now() + Duration::from_secs(15);
    let mut approved = 0.0;
    while std::time::Instant::now() < until {
        approved =
            count("sum by (carrier) (otpgw_verification_codes_approved_total{carrier=\"sim\"})")
                .await;
        if approved >= 18.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let sent =
        count("sum by (carrier) (otpgw_verification_codes_sent_total{carrier=\"sim\"})").await;
    assert_eq!(
        (approved, sent),
        (18.0, 24.0 + f64::from(attack_sent)),
        "codes approved and sent through sim (the attack's too)"
    );
    gw.shutdown().await;
    sim.shutdown();
}

/// Every shipped alert fires on the event it watches, once its `for:` has passed,
/// and not before: `deploy/prometheus/alerts_test.yml` run by promtool (Prometheus's
/// own rule engine) feeds each alert's event as series. Every alert of alerts.yml
/// must have a case there that expects it to fire.
#[test]
fn every_alert_fires_on_its_event() {
    if !have("promtool") {
        assert!(
            std::env::var_os("OTPGW_REQUIRE_PROMETHEUS").is_none(),
            "promtool is required (scripts/test.sh installs it)"
        );
        eprintln!("SKIPPED: promtool not installed; run scripts/test.sh");
        return;
    }
    let rules = std::fs::read_to_string(format!("{DEPLOY}/prometheus/alerts.yml")).unwrap();
    let tests = std::fs::read_to_string(format!("{DEPLOY}/prometheus/alerts_test.yml")).unwrap();
    let names: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert_eq!(names.len(), 13);
    for n in &names {
        // A case expecting it: "alertname: X" followed by a non-empty exp_alerts.
        let fires = tests
            .split("alertname: ")
            .skip(1)
            .any(|case| case.starts_with(&format!("{n}\n")) && case.contains("exp_labels"));
        assert!(fires, "alerts_test.yml has no case where {n} fires");
    }
    let o = Command::new("promtool")
        .args(["test", "rules", "alerts_test.yml"])
        .current_dir(format!("{DEPLOY}/prometheus"))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "promtool test rules: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}
