//! `otpgw pumping`: the fraud guard's simulator. It starts the gateway as `otpgw
//! demo` does (its default settings, the embedded store, a simulated carrier whose
//! phones it reads) and drives its HTTP API on 127.0.0.1 with two populations:
//! honest users who ask for codes to numbers of many prefixes and type them back
//! after a short delay most of the time, and an attacker who asks for codes to
//! random numbers of one or more prefixes (SMS pumping). Its report (text or
//! `--json`) says how many codes the attack got, how many honest requests were
//! refused, and how long the first block took.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rand::Rng;
use serde_json::json;

use crate::{Context, usage};

/// `otpgw pumping` options.
#[derive(Debug, Clone, clap::Args)]
pub struct PumpingArgs {
    /// Length of the run (seconds).
    #[arg(long, default_value_t = 90.0)]
    pub duration: f64,
    /// Honest verification requests per second.
    #[arg(long, default_value_t = 5.0)]
    pub honest_rate: f64,
    /// Share of honest users who type their code.
    #[arg(long, default_value_t = 0.9)]
    pub type_share: f64,
    /// Honest users type their code this many seconds after asking, at least...
    #[arg(long, default_value_t = 2.0)]
    pub min_delay: f64,
    /// ... and at most.
    #[arg(long, default_value_t = 8.0)]
    pub max_delay: f64,
    /// The attacker's requests per second.
    #[arg(long, default_value_t = 5.0)]
    pub attack_rate: f64,
    /// The attack starts this many seconds into the run.
    #[arg(long, default_value_t = 20.0)]
    pub attack_after: f64,
    /// Prefixes (international, no +) the attacker's random numbers are in.
    #[arg(long, value_delimiter = ',', default_value = "447911")]
    pub attack_prefixes: Vec<String>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What the two populations saw.
#[derive(Debug, Default)]
struct Tally {
    honest: u64,
    honest_created: u64,
    honest_refused: BTreeMap<String, u64>,
    honest_typed: u64,
    honest_approved: u64,
    attack: u64,
    attack_sent: u64,
    attack_refused: BTreeMap<String, u64>,
    /// Since the attack started, when its first request was refused as blocked,
    /// and the codes it had got by then.
    first_block: Option<(f64, u64)>,
    other_errors: u64,
}

/// A random valid mobile number in `prefix` (`None` when none is found).
fn number_in(prefix: &str, rng: &mut impl Rng) -> Option<String> {
    let len = match prefix.as_bytes().first() {
        Some(b'1') => 11,
        Some(b'4') if prefix.starts_with("49") => 13,
        Some(b'3') if prefix.starts_with("33") => 11,
        _ => 12,
    };
    for _ in 0..50 {
        let mut n = prefix.to_string();
        while n.len() < len {
            n.push(char::from(b'0' + rng.random_range(0..10u8)));
        }
        if otpgw_accept::number::inspect(&n)
            .is_some_and(|i| i.kind == otpgw_accept::number::Kind::Mobile)
        {
            return Some(n);
        }
    }
    None
}

/// A prefix honest users' numbers are in: about 60, in three countries (some
/// have no mobile numbers: the caller draws again).
fn honest_prefix(rng: &mut impl Rng) -> String {
    match rng.random_range(0..4) {
        0 | 1 => format!("4474{:02}", rng.random_range(0..50)),
        2 => format!("336{:02}", rng.random_range(0..100)),
        _ => format!("4915{}", rng.random_range(1..8)),
    }
}

fn random_ip(rng: &mut impl Rng) -> String {
    format!(
        "{}.{}.{}.{}",
        rng.random_range(1..224),
        rng.random_range(0..256),
        rng.random_range(0..256),
        rng.random_range(1..255)
    )
}

/// Run the scenario and print the report.
pub async fn run(a: PumpingArgs) -> crate::Result<()> {
    let ok = a.duration > 0.0
        && a.honest_rate > 0.0
        && a.attack_rate >= 0.0
        && (0.0..=1.0).contains(&a.type_share)
        && 0.0 <= a.min_delay
        && a.min_delay <= a.max_delay;
    if !ok {
        return usage(
            "--duration and --honest-rate above 0, --type-share 0 to 1, --min-delay <= --max-delay",
        );
    }
    let mut rng = rand::rng();
    for p in &a.attack_prefixes {
        if number_in(p, &mut rng).is_none() {
            return usage(format!(
                "--attack-prefixes: {p} has no valid mobile numbers"
            ));
        }
    }
    // The demo's gateway and carrier.
    let mut sim_cfg = otpgw_sim::SimConfig::new(([127, 0, 0, 1], 0).into());
    sim_cfg.credentials = Some(("otpgw".into(), "secret".into()));
    sim_cfg.receipt_delay = Duration::from_millis(50);
    let sim = Arc::new(otpgw_sim::SimHandle::start(sim_cfg).await?);
    let dir = std::env::temp_dir().join(format!("otpgw-pumping-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let local = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let cfg = crate::demo::demo_config(local, local, sim.addr(), &dir.join("otpgw.redb"));
    let gw = otpgw_node::Gateway::start(&cfg).await?;
    if !gw.wait_bound(2, Duration::from_secs(10)).await {
        return Err(crate::LabError::Failed(
            "no bind to the simulated carrier".into(),
        ));
    }
    let base = format!("http://{}", gw.http_addr().context("the HTTP API")?);
    let http = reqwest::Client::new();
    let tally = Arc::new(Mutex::new(Tally::default()));
    let start = Instant::now();
    let end = start + Duration::try_from_secs_f64(a.duration).context("--duration")?;
    let attack_at =
        start + Duration::try_from_secs_f64(a.attack_after).context("--attack-after")?;
    let every = |rate: f64, from: Instant| {
        let period = Duration::from_secs_f64(1.0 / rate.max(0.001));
        let mut t = tokio::time::interval_at(from.into(), period);
        // Behind (a slow machine): later, never a burst to catch up.
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    };
    let mut honest_tick = every(a.honest_rate, start);
    let mut attack_tick = every(a.attack_rate, attack_at);
    let mut tasks = tokio::task::JoinSet::new();
    while Instant::now() < end {
        tokio::select! {
            _ = honest_tick.tick() => {
                let to = (0..100)
                    .find_map(|_| number_in(&honest_prefix(&mut rng), &mut rng))
                    .context("an honest user's number")?;
                let typed = rng.random_bool(a.type_share);
                let delay = Duration::from_secs_f64(rng.random_range(a.min_delay..=a.max_delay));
                let ctx = (http.clone(), base.clone(), tally.clone(), sim.clone(), random_ip(&mut rng));
                tasks.spawn(honest(ctx, to, typed.then_some(delay)));
            }
            _ = attack_tick.tick(), if Instant::now() >= attack_at && a.attack_rate > 0.0 => {
                let p = &a.attack_prefixes[rng.random_range(0..a.attack_prefixes.len())];
                let to = number_in(p, &mut rng).context("a number")?;
                let since = attack_at.elapsed().as_secs_f64();
                let ctx = (http.clone(), base.clone(), tally.clone(), random_ip(&mut rng));
                tasks.spawn(attack(ctx, to, since));
            }
        }
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    gw.shutdown().await;
    sim.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
    report(&a, &tally.lock())
}

type HonestCtx = (
    reqwest::Client,
    String,
    Arc<Mutex<Tally>>,
    Arc<otpgw_sim::SimHandle>,
    String,
);

/// POST `body` to `url`: the status and the JSON answer.
async fn post(
    http: &reqwest::Client,
    url: &str,
    body: serde_json::Value,
) -> Option<(u16, serde_json::Value)> {
    let r = http
        .post(url)
        .bearer_auth(crate::demo::DEMO_KEY)
        .json(&body)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .ok()?;
    let status = r.status().as_u16();
    Some((status, r.json().await.unwrap_or_default()))
}

fn code_of(answer: &serde_json::Value) -> String {
    answer["error"]["code"].as_str().unwrap_or("?").to_string()
}

async fn honest((http, base, tally, sim, ip): HonestCtx, to: String, typed: Option<Duration>) {
    let body = json!({"to": format!("+{to}"), "ip": ip});
    let answer = post(&http, &format!("{base}/v1/verifications"), body).await;
    tally.lock().honest += 1;
    let id = match answer {
        Some((201, v)) => v["id"].as_str().unwrap_or_default().to_string(),
        Some((_, v)) => {
            *tally.lock().honest_refused.entry(code_of(&v)).or_default() += 1;
            return;
        }
        None => {
            tally.lock().other_errors += 1;
            return;
        }
    };
    tally.lock().honest_created += 1;
    let Some(delay) = typed else { return };
    tokio::time::sleep(delay).await;
    // The code on the phone's screen.
    let code = sim
        .records()
        .iter()
        .rev()
        .find(|r| r.fields.dest.addr.trim_start_matches('+') == to)
        .and_then(|r| {
            let t = r.shown_text();
            t.split(|c: char| !c.is_ascii_digit())
                .find(|w| w.len() == 6)
                .map(str::to_string)
        });
    let Some(code) = code else { return };
    tally.lock().honest_typed += 1;
    let url = format!("{base}/v1/verifications/{id}/check");
    if let Some((200, v)) = post(&http, &url, json!({"code": code})).await
        && v["status"] == "approved"
    {
        tally.lock().honest_approved += 1;
    }
}

async fn attack(
    (http, base, tally, ip): (reqwest::Client, String, Arc<Mutex<Tally>>, String),
    to: String,
    since: f64,
) {
    let body = json!({"to": format!("+{to}"), "ip": ip});
    let answer = post(&http, &format!("{base}/v1/verifications"), body).await;
    let mut t = tally.lock();
    t.attack += 1;
    match answer {
        Some((201, _)) => t.attack_sent += 1,
        Some((_, v)) => {
            let code = code_of(&v);
            if code == "prefix_blocked" && t.first_block.is_none() {
                t.first_block = Some((since, t.attack_sent));
            }
            *t.attack_refused.entry(code).or_default() += 1;
        }
        None => t.other_errors += 1,
    }
}

fn report(a: &PumpingArgs, t: &Tally) -> crate::Result<()> {
    let refused: u64 = t.honest_refused.values().sum();
    let pct = 100.0 * refused as f64 / t.honest.max(1) as f64;
    let v = json!({
        "duration_s": a.duration,
        "honest": {
            "rate": a.honest_rate,
            "requests": t.honest,
            "created": t.honest_created,
            "refused": refused,
            "refused_pct": pct,
            "refused_by_code": t.honest_refused,
            "typed": t.honest_typed,
            "approved": t.honest_approved,
        },
        "attack": {
            "rate": a.attack_rate,
            "prefixes": a.attack_prefixes,
            "requests": t.attack,
            "codes_sent": t.attack_sent,
            "refused_by_code": t.attack_refused,
            "seconds_to_first_block": t.first_block.map(|b| b.0),
            "codes_before_first_block": t.first_block.map(|b| b.1),
        },
        "errors": t.other_errors,
    });
    if a.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "honest users: {} requests, {} refused ({pct:.2} %), {} codes typed, {} approved",
            t.honest, refused, t.honest_typed, t.honest_approved
        );
        println!(
            "attack on {}: {} requests, {} codes sent; first block after {}",
            a.attack_prefixes.join(","),
            t.attack,
            t.attack_sent,
            t.first_block.map_or("never".into(), |b| format!(
                "{:.1} s and {} codes",
                b.0, b.1
            ))
        );
    }
    Ok(())
}
