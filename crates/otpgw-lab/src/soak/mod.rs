//! `otpgw soak`: a fault campaign against real `otpgw serve` processes, checked by
//! an independent ledger ([`ledger`]).
//!
//! Two simulated carriers (in this process), each behind a loopback proxy
//! ([`otpgw_sim::proxy`]); one gateway node (embedded or log store), or three on a
//! durable Redis; the brand load generator at a steady rate, in rounds of a few
//! seconds. Meanwhile, on a schedule bounded in time and count:
//! - a gateway node is killed (SIGKILL) every 20 to 40 s and started again;
//! - carrier A's binds are cut every 2 s for a while (flapping, through its proxy);
//! - carrier B stops answering submits for 10 s;
//! - carrier A's link gets 300 ms of latency each way;
//! - the store's disk fills up until accepts fail, then is freed (a tmpfs mounted for
//!   the run; skipped, and said, where mounting is not allowed);
//! - (Redis) Redis is killed and restarted.
//!
//! Then faults stop, the gateway drains, every receipt owed is collected, and the
//! checker compares what the brand saw acknowledged, what the carriers received
//! and what receipts the brand got.

pub mod fuzz_live;
pub mod ledger;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::Context;
use parking_lot::Mutex;
use rand::{Rng as _, SeedableRng};

use otpgw_sim::loadgen::{self, LoadConfig};
use otpgw_sim::proxy::Proxy;
use otpgw_sim::redis_server::TestRedis;
use otpgw_sim::{SimConfig, SimHandle};

use ledger::{Acked, Got, Ledger, Verdict, Window};

/// Which store the nodes use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum Mode {
    /// One node, the embedded (redb) store.
    Embedded,
    /// One node, the log store.
    Log,
    /// Three nodes on one durable Redis.
    Redis,
}

/// `otpgw soak` options.
#[derive(Debug, Clone, clap::Args)]
pub struct SoakArgs {
    /// How long the load and the faults run (the drain comes after).
    #[arg(long, default_value_t = 2.0)]
    pub minutes: f64,
    /// Messages per second offered.
    #[arg(long, default_value_t = 300)]
    pub rate: u32,
    #[arg(long, value_enum, default_value_t = Mode::Log)]
    pub mode: Mode,
    /// Write the report (JSON) here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Seed of the fault schedule's random times.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Faults to leave out (to isolate one when the checker finds something).
    #[arg(long, value_enum)]
    pub skip: Vec<Fault>,
}

/// The campaign's kinds of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Fault {
    Kill,
    Flap,
    Silent,
    Latency,
    Disk,
    Redis,
}

/// The brand's password (its hash is in the nodes' config).
const BRAND_PW: &str = "pw1";
const BRAND_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$ZsxRHVrDzMPWgzbh8LlRVA$oq2uNdpAD6ds4B/9end6jzCP4LegVA8dSS1bA5Dwyj0";
/// Every message's lifetime (an OTP's: short enough that a stall makes some expire).
const VALIDITY: Duration = Duration::from_secs(60);
/// The same, as an SMPP relative validity_period.
const VALIDITY_SMPP: &str = "000000000100000R";

/// What the campaign did to the system.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Faults {
    pub kills: u32,
    pub flap_episodes: u32,
    pub binds_cut: u32,
    pub silent_episodes: u32,
    pub latency_episodes: u32,
    pub disk_full_episodes: u32,
    /// Accepts refused while the disk was full (brands were told).
    pub refused_while_full: u64,
    pub redis_restarts: u32,
    pub disk_full_skipped: Option<String>,
}

/// The report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub mode: Mode,
    pub minutes: f64,
    pub rate: u32,
    pub messages_sent: u64,
    pub faults: Faults,
    pub verdict: Verdict,
    /// Possible duplicates the gateway counted (metrics and restarts' recovery).
    pub duplicates_counted: u64,
    pub wall_seconds: f64,
    /// Where the nodes' configs and logs are (removed when the run is clean).
    #[serde(skip)]
    pub dir: PathBuf,
}

use otpgw_sim::process::{ServeProcess, free_port};
use otpgw_sim::tmpfs::Tmpfs;

/// One gateway node: an `otpgw serve` child process, with its ops port and the
/// possible duplicates its killed processes counted.
struct Node {
    process: ServeProcess,
    ops: u16,
    counted_before: u64,
}

/// This binary, for the nodes. On Linux `/proc/self/exe`, which still runs this
/// very binary when a build has replaced the file meanwhile (every node of a run is
/// the same code).
fn own_exe() -> std::io::Result<PathBuf> {
    if cfg!(target_os = "linux") {
        Ok(PathBuf::from("/proc/self/exe"))
    } else {
        std::env::current_exe()
    }
}

impl Node {
    /// A node named `name` in `dir` on `config` (not started).
    fn new(dir: &Path, name: &str, port: u16, ops: u16, config: &str) -> crate::Result<Self> {
        let process = ServeProcess::new(&own_exe()?, dir, name, port, config, "warn,otpgw=info")?;
        Ok(Self {
            process,
            ops,
            counted_before: 0,
        })
    }

    fn start(&mut self) -> crate::Result<()> {
        self.process
            .spawn()
            .map_err(|e| crate::LabError::Failed(e.to_string()))
    }

    fn kill9(&mut self) {
        self.process.kill9();
    }

    /// Whether the process is still running (not exited, not crashed).
    fn running(&mut self) -> bool {
        self.process.running()
    }

    async fn wait_up(&self, limit: Duration) -> crate::Result<()> {
        self.process
            .wait_listening(limit)
            .await
            .map_err(|e| crate::LabError::Failed(e.to_string()))
    }

    fn up(&self) -> bool {
        self.process.listening()
    }

    fn addr(&self) -> SocketAddr {
        self.process.addr()
    }

    fn log(&self) -> &Path {
        self.process.log_path()
    }
}

/// The gateway's count of resends after a submit's answer was lost.
const POSSIBLE_DUPLICATES: &str = "otpgw_carrier_possible_duplicates_total";

/// The latency carrier A's link gets in its slow episodes (each way).
const LINK_LATENCY: Duration = Duration::from_millis(300);

/// How far around a bind cut a submit may have been taken by the carrier and its
/// response lost with the cut (the proxy's tasks carry the reset out).
const CUT_REACH: Duration = Duration::from_millis(100);

/// A fault window into the ledger.
fn window(ledger: &Mutex<Ledger>, carrier: Option<&'static str>, from: Instant, to: Instant) {
    ledger.lock().windows.push(Window { carrier, from, to });
}

/// Possible duplicates a node counted: resends after lost answers (metrics of the
/// running process) and messages recovered as possibly sent (its logs, which
/// outlive its processes).
async fn counted_duplicates(log: &Path, ops: u16) -> u64 {
    let logs = std::fs::read_to_string(log).unwrap_or_default();
    let recovered: u64 = logs
        .lines()
        .filter(|l| l.contains("possibly_sent="))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("possibly_sent="))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .sum();
    recovered + metric(ops, POSSIBLE_DUPLICATES).await
}

/// A node's metrics page (empty when unreachable).
async fn scrape(port: u16) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return String::new();
    };
    let _ = s
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .await;
    let mut b = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut b)).await;
    String::from_utf8_lossy(&b).into_owned()
}

/// The lines of a node's metrics that start with one of `prefixes`.
async fn metric_lines(port: u16, prefixes: &[&str]) -> String {
    scrape(port)
        .await
        .lines()
        .filter(|l| prefixes.iter().any(|p| l.starts_with(p)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The sum of a metric's series on a node's ops listener (0 when unreachable).
async fn metric(port: u16, name: &str) -> u64 {
    scrape(port)
        .await
        .lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

fn config(node: &str, port: u16, ops: u16, store: &str, a: SocketAddr, b: SocketAddr) -> String {
    let carrier = |name: &str, addr: SocketAddr| {
        format!(
            "[[carrier]]\nname = \"{name}\"\naddress = \"{addr}\"\nsystem_id = \"otpgw\"\npassword = \"secret\"\nbinds = 2\nwindow = 200\nreconnect_min_ms = 50\nreconnect_max_ms = 1000\nretry_delay_ms = 100\nresponse_timeout_ms = 3000\nreceipt_timeout_ms = 5000\nreceipt_ids = \"hex_to_decimal\"\n"
        )
    };
    format!(
        "# otpgw soak: node {node}\n[server]\nlisten = \"127.0.0.1:{port}\"\nshutdown_grace_secs = 2\n[ops]\nlisten = \"127.0.0.1:{ops}\"\n[store]\n{store}\n[queue]\nrefuse_after_down_ms = 0\n[quality]\nwindow_secs = 20\n[[brand]]\nsystem_id = \"bank\"\npassword_hash = \"{BRAND_HASH}\"\n{}{}[routes]\ndefault = [\"a\", \"b\"]\nselect = \"quality\"\n",
        carrier("a", a),
        carrier("b", b)
    )
}

async fn sim() -> crate::Result<SimHandle> {
    let mut c = SimConfig::new(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    c.credentials = Some(("otpgw".into(), "secret".into()));
    c.receipt_delay = Duration::from_millis(50);
    Ok(SimHandle::start(c).await?)
}

/// Index of a message from its text ("code NNNNNNNNNN...").
fn index_of(text: &[u8]) -> Option<u64> {
    std::str::from_utf8(text.get(5..15)?).ok()?.parse().ok()
}

/// Run the campaign and print its report; fails when the checker finds a fault.
pub async fn run(args: SoakArgs) -> crate::Result<()> {
    let r = campaign(&args).await?;
    let v = &r.verdict;
    println!(
        "otpgw soak: {:?}, {:.1} min at {}/s",
        r.mode, r.minutes, r.rate
    );
    println!(
        "faults: {} kills, {} flap episodes ({} bind cuts), {} silent-carrier episodes, {} latency episodes, {} disk-full episodes ({} accepts refused meanwhile), {} redis restarts{}",
        r.faults.kills,
        r.faults.flap_episodes,
        r.faults.binds_cut,
        r.faults.silent_episodes,
        r.faults.latency_episodes,
        r.faults.disk_full_episodes,
        r.faults.refused_while_full,
        r.faults.redis_restarts,
        r.faults
            .disk_full_skipped
            .as_deref()
            .map(|s| format!(" ({s})"))
            .unwrap_or_default()
    );
    println!(
        "ledger: {} sent, {} acknowledged; lost {}, expired unsent (brand told) {}, receipts missing {}, duplicate receipts {} ({} of them not across a node kill), conflicting receipts {}, late sends {}; duplicates at carriers {} ({} outside any fault window; {} counted by the gateway), fallbacks {}, unknown receipts {}, sent though refused {} ({} of them not across a node kill)",
        r.messages_sent,
        v.acked,
        v.lost,
        v.expired_unsent,
        v.missing_receipts,
        v.duplicate_receipts,
        v.duplicate_receipts_unexplained,
        v.conflicting_receipts,
        v.late,
        v.duplicates_at_carrier,
        v.duplicates_unexplained,
        r.duplicates_counted,
        v.fallbacks,
        v.unknown_receipts,
        v.sent_though_refused,
        v.sent_though_refused_unexplained
    );
    if let Some(p) = &args.report {
        std::fs::write(p, serde_json::to_string_pretty(&r)?)?;
    }
    if !v.clean() || v.duplicates_at_carrier > r.duplicates_counted {
        for x in &v.samples {
            println!("  sample: {x}");
        }
        return Err(crate::LabError::Failed(format!(
            "the checker found faults (the nodes' logs are kept in {})",
            r.dir.display()
        )));
    }
    let _ = std::fs::remove_dir_all(&r.dir);
    println!(
        "clean: nothing acknowledged lost, every receipt arrived (repeated only across a node kill), no resend outside a fault, nothing late"
    );
    Ok(())
}

async fn campaign(args: &SoakArgs) -> crate::Result<Report> {
    let wall = Instant::now();
    let dir = std::env::temp_dir().join(format!("otpgw-soak-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let mut faults = Faults::default();
    let (a, b) = (sim().await?, sim().await?);
    let (pa, pb) = (Proxy::start(a.addr()).await?, Proxy::start(b.addr()).await?);
    let disk = match args.mode {
        Mode::Redis => None,
        _ => match Tmpfs::mount(&dir.join("disk"), 256 << 10) {
            Ok(d) => Some(d),
            Err(e) => {
                faults.disk_full_skipped = Some(format!("{e}: disk-full faults skipped"));
                None
            }
        },
    };
    let mut redis = None;
    let names: Vec<&str> = match args.mode {
        Mode::Redis => vec!["n1", "n2", "n3"],
        _ => vec!["n1"],
    };
    if args.mode == Mode::Redis {
        redis = Some(TestRedis::start("soak").context("redis-server is needed for --mode redis")?);
    }
    let mut nodes = Vec::new();
    for name in &names {
        let store_dir = disk.as_ref().map_or(dir.join(name), |d| d.dir().join(name));
        let store = match args.mode {
            Mode::Embedded => format!("path = \"{}\"", store_dir.join("otpgw.redb").display()),
            Mode::Log => format!("backend = \"log\"\npath = \"{}\"", store_dir.display()),
            Mode::Redis => format!(
                "backend = \"redis\"\nredis_url = \"{}\"\nnode_id = \"{name}\"\nredis_prefix = \"soak\"",
                redis.as_ref().map(|r| r.url()).unwrap_or_default()
            ),
        };
        let (port, ops) = (free_port()?, free_port()?);
        let text = config(name, port, ops, &store, pa.addr(), pb.addr());
        let mut n = Node::new(&dir, name, port, ops, &text)?;
        n.start()?;
        nodes.push(n);
    }
    for n in &nodes {
        n.wait_up(Duration::from_secs(30)).await?;
    }
    let nodes = Arc::new(Mutex::new(nodes));
    let ledger = Arc::new(Mutex::new(Ledger {
        start: Some(Instant::now()),
        ..Default::default()
    }));
    println!(
        "campaign starts at {} (sample times count from it; the nodes' logs are in UTC)",
        otpgw_core::clock::now_ms()
    );
    let run_for = Duration::from_secs_f64(args.minutes * 60.0);
    let start = Instant::now();
    let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));

    // The load: rounds of 5 s at the rate, each on a node that is up.
    let load = {
        let (nodes, ledger, sent) = (nodes.clone(), ledger.clone(), sent.clone());
        let rate = args.rate;
        tokio::spawn(async move {
            let mut next = 0u64;
            let mut k = 0usize;
            while start.elapsed() < run_for {
                let addr = {
                    let ns = nodes.lock();
                    let up: Vec<SocketAddr> =
                        ns.iter().filter(|n| n.up()).map(Node::addr).collect();
                    k += 1;
                    up.get(k % up.len().max(1)).copied()
                };
                let Some(addr) = addr else {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                };
                let mut lc = LoadConfig::new(addr, "bank", BRAND_PW, u64::from(rate) * 5);
                lc.rate = Some(rate);
                lc.window = 100;
                lc.first_index = next;
                lc.validity_period = VALIDITY_SMPP.into();
                lc.duration = Some(Duration::from_secs(5));
                lc.receipt_timeout = Duration::from_millis(500);
                let from = Instant::now();
                let Ok(r) = loadgen::run(lc).await else {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                };
                next += r.sent.max(1);
                sent.fetch_add(r.sent, std::sync::atomic::Ordering::Relaxed);
                record(&ledger, &r, from);
            }
        })
    };

    // The faults.
    let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed);
    let cycle = run_for.min(Duration::from_secs(120));
    let mut next_kill = start + Duration::from_secs(rng.random_range(20..=40));
    let mut cycle_start = start;
    let mut done_in_cycle = [false; 5];
    let mut next_cut = start;
    while start.elapsed() < run_for {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = Instant::now();
        if now >= next_kill && !args.skip.contains(&Fault::Kill) {
            let (i, ops) = {
                let ns = nodes.lock();
                let i = rng.random_range(0..ns.len());
                (i, ns[i].ops)
            };
            // What this process counted dies with it: read it just before.
            let seen = metric(ops, POSSIBLE_DUPLICATES).await;
            {
                let mut ns = nodes.lock();
                ns[i].counted_before += seen;
                ns[i].kill9();
            }
            ledger.lock().kills.push(now);
            // What the node wrote before it died still arrives at a carrier for as
            // long as the link delays it.
            window(
                &ledger,
                None,
                now,
                Instant::now() + LINK_LATENCY + CUT_REACH,
            );
            faults.kills += 1;
            note(start, "node killed");
            tokio::time::sleep(Duration::from_secs(1)).await;
            nodes.lock()[i].start()?;
            next_kill = Instant::now() + Duration::from_secs(rng.random_range(20..=40));
        }
        let at = now.duration_since(cycle_start);
        if at >= cycle {
            cycle_start = now;
            done_in_cycle = [false; 5];
            continue;
        }
        let frac = at.as_secs_f64() / cycle.as_secs_f64();
        // 0-45 %: flapping; 50-60 %: B silent; 62-80 %: A slow; 82-92 %: disk full;
        // 95 %: Redis restarted.
        let on = |f: Fault| !args.skip.contains(&f);
        if frac < 0.45 && on(Fault::Flap) {
            if !done_in_cycle[0] {
                done_in_cycle[0] = true;
                faults.flap_episodes += 1;
            }
            if now >= next_cut {
                pa.reset_all();
                // A submit the carrier took just before the cut may have lost its
                // response on the way back (the proxy's buffers go with the reset),
                // and the proxy's tasks carry the reset out just after.
                window(
                    &ledger,
                    Some("a"),
                    now.checked_sub(CUT_REACH).unwrap_or(now),
                    Instant::now() + CUT_REACH,
                );
                faults.binds_cut += 1;
                note(start, "carrier a binds cut");
                next_cut = now + Duration::from_secs(2);
            }
        } else if (0.50..0.60).contains(&frac) && !done_in_cycle[1] && on(Fault::Silent) {
            done_in_cycle[1] = true;
            faults.silent_episodes += 1;
            note(start, "carrier b silent");
            b.set_silent(true);
            tokio::time::sleep(Duration::from_secs(10).min(cycle / 10)).await;
            b.set_silent(false);
            note(start, "carrier b answers again");
            window(&ledger, Some("b"), now, Instant::now());
        } else if (0.62..0.80).contains(&frac) && !done_in_cycle[2] && on(Fault::Latency) {
            done_in_cycle[2] = true;
            faults.latency_episodes += 1;
            note(start, "carrier a latency 300 ms");
            pa.set_latency(LINK_LATENCY);
            tokio::time::sleep(cycle.mul_f64(0.15)).await;
            pa.set_latency(Duration::ZERO);
            note(start, "carrier a latency off");
        } else if (0.82..0.92).contains(&frac) && !done_in_cycle[3] && on(Fault::Disk) {
            done_in_cycle[3] = true;
            if let Some(d) = &disk {
                faults.disk_full_episodes += 1;
                note(start, "disk filling");
                let before = refused(&nodes).await;
                d.fill(0)?;
                tokio::time::sleep(cycle.mul_f64(0.08)).await;
                d.free();
                note(start, "disk freed");
                faults.refused_while_full += refused(&nodes).await.saturating_sub(before);
            }
        } else if frac >= 0.95 && !done_in_cycle[4] && on(Fault::Redis) {
            done_in_cycle[4] = true;
            if let Some(r) = redis.as_mut() {
                faults.redis_restarts += 1;
                note(start, "redis killed");
                r.kill9();
                tokio::time::sleep(Duration::from_secs(2)).await;
                if !r.spawn() {
                    return Err(crate::LabError::Failed("redis did not come back".into()));
                }
                window(&ledger, None, now, Instant::now());
            }
        }
    }
    // Faults over: everything back, the load ends, the gateway drains.
    pa.set_latency(Duration::ZERO);
    b.set_silent(false);
    if let Some(d) = &disk {
        d.free();
    }
    {
        let mut ns = nodes.lock();
        for n in ns.iter_mut() {
            if !n.process.is_started() {
                n.start()?;
            }
        }
    }
    load.await?;
    collect(&nodes, &ledger, &a, &b).await;
    let verdict = {
        let mut l = ledger.lock();
        for (carrier, s) in [("a", &a), ("b", &b)] {
            for r in s.records() {
                if let Some(i) = index_of(r.text()) {
                    l.at_carrier.entry(i).or_default().push((carrier, r.at));
                }
            }
        }
        l.check(VALIDITY)
    };
    let mut counted = 0;
    let sources: Vec<(PathBuf, u16, u64)> = nodes
        .lock()
        .iter()
        .map(|n| (n.log().to_path_buf(), n.ops, n.counted_before))
        .collect();
    for (log, ops, before) in &sources {
        counted += before + counted_duplicates(log, *ops).await;
    }
    for p in [&pa, &pb] {
        p.shutdown();
    }
    a.shutdown();
    b.shutdown();
    drop(nodes);
    drop(disk);
    Ok(Report {
        mode: args.mode,
        minutes: args.minutes,
        rate: args.rate,
        messages_sent: sent.load(std::sync::atomic::Ordering::Relaxed),
        faults,
        verdict,
        duplicates_counted: counted,
        wall_seconds: wall.elapsed().as_secs_f64(),
        dir,
    })
}

/// A fault, on stderr, with its time from the start (for the post-mortem).
fn note(start: Instant, what: &str) {
    eprintln!("fault {:9.3}s {what}", start.elapsed().as_secs_f64());
}

/// Refusals the nodes answered so far (ESME_RSYSERR while the disk is full).
async fn refused(nodes: &Mutex<Vec<Node>>) -> u64 {
    let ports: Vec<u16> = nodes.lock().iter().map(|n| n.ops).collect();
    let mut n = 0;
    for p in ports {
        n += metric(p, "otpgw_messages_rejected_total").await;
    }
    n
}

/// Put a load round into the ledger.
fn record(ledger: &Mutex<Ledger>, r: &otpgw_sim::LoadReport, from: Instant) {
    let to = Instant::now();
    let mut l = ledger.lock();
    for (i, id) in &r.ids {
        l.acked.insert(
            *i,
            Acked {
                id: id.clone(),
                at: to,
            },
        );
    }
    for i in &r.refused {
        l.refused.insert(*i, from);
    }
    let got = |state| Got { state, from, to };
    for (id, states) in &r.receipts_by_id {
        l.receipts
            .entry(id.clone())
            .or_default()
            .extend(states.iter().map(|s| got(*s)));
    }
    for (id, st) in &r.foreign_receipts {
        l.receipts.entry(id.clone()).or_default().push(got(*st));
    }
}

/// Drain: collect receipts on every node until each acknowledged message has one
/// and the carriers hold none (at most 3 minutes).
async fn collect(nodes: &Mutex<Vec<Node>>, ledger: &Mutex<Ledger>, a: &SimHandle, b: &SimHandle) {
    let until = Instant::now() + Duration::from_secs(180);
    while Instant::now() < until {
        let owed = {
            let l = ledger.lock();
            l.acked
                .values()
                .filter(|x| !l.receipts.contains_key(&x.id))
                .count() as u64
        };
        if owed == 0 && a.pending_receipts() == 0 && b.pending_receipts() == 0 {
            return;
        }
        let addrs: Vec<SocketAddr> = nodes
            .lock()
            .iter()
            .filter(|n| n.up())
            .map(Node::addr)
            .collect();
        for addr in addrs {
            let mut lc = LoadConfig::new(addr, "bank", BRAND_PW, 0);
            lc.expect_receipts = Some(owed.max(1));
            lc.receipt_timeout = Duration::from_secs(3);
            let from = Instant::now();
            if let Ok(r) = loadgen::run(lc).await {
                record(ledger, &r, from);
            }
        }
    }
}
