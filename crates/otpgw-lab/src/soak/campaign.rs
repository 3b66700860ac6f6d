//! The campaign: real nodes, the load, the faults on a schedule, the drain, and the
//! ledger's verdict.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng};

use otpgw_sim::SimHandle;
use otpgw_sim::loadgen::{self, LoadConfig};
use otpgw_sim::process::free_port;
use otpgw_sim::proxy::Proxy;
use otpgw_sim::redis_server::TestRedis;
use otpgw_sim::tmpfs::Tmpfs;

use super::ledger::{Acked, Got, Ledger, Window};
use super::node::{Node, POSSIBLE_DUPLICATES, counted_duplicates, counted_redeliveries, metric};
use super::{
    BRAND_PW, Fault, Faults, Mode, Report, SoakArgs, VALIDITY, VALIDITY_SMPP, config, index_of, sim,
};
use crate::Context;

/// The latency carrier A's link gets in its slow episodes (each way).
const LINK_LATENCY: Duration = Duration::from_millis(300);

/// How far around a bind cut a submit may have been taken by the carrier and its
/// response lost with the cut (the proxy's tasks carry the reset out).
const CUT_REACH: Duration = Duration::from_millis(100);

/// A fault window into the ledger.
fn window(ledger: &Mutex<Ledger>, carrier: Option<&'static str>, from: Instant, to: Instant) {
    ledger.lock().windows.push(Window { carrier, from, to });
}

/// What a campaign runs on: the carriers (each behind a proxy), the store's disk
/// (a tmpfs, when it can be mounted), Redis (its mode), the nodes.
struct Rig {
    dir: PathBuf,
    a: SimHandle,
    b: SimHandle,
    pa: Proxy,
    pb: Proxy,
    disk: Option<Tmpfs>,
    redis: Option<TestRedis>,
    nodes: Arc<Mutex<Vec<Node>>>,
}

/// The carriers, the disk, Redis, and the nodes up.
async fn rig(args: &SoakArgs, faults: &mut Faults) -> crate::Result<Rig> {
    let dir = std::env::temp_dir().join(format!("otpgw-soak-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
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
    Ok(Rig {
        dir,
        a,
        b,
        pa,
        pb,
        disk,
        redis,
        nodes: Arc::new(Mutex::new(nodes)),
    })
}

pub(super) async fn campaign(args: &SoakArgs) -> crate::Result<Report> {
    let wall = Instant::now();
    let mut faults = Faults::default();
    let mut rig = rig(args, &mut faults).await?;
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
    let sent = Arc::new(AtomicU64::new(0));
    let load = spawn_load(args.rate, &rig.nodes, &ledger, &sent, start, run_for);
    inject_faults(args, &mut rig, &ledger, &mut faults, start, run_for).await?;
    // Faults over: everything back, the load ends, the gateway drains.
    rig.pa.set_latency(Duration::ZERO);
    rig.b.set_silent(false);
    if let Some(d) = &rig.disk {
        d.free();
    }
    {
        let mut ns = rig.nodes.lock();
        for n in ns.iter_mut() {
            if !n.process.is_started() {
                n.start()?;
            }
        }
    }
    load.await?;
    collect(&rig.nodes, &ledger, &rig.a, &rig.b).await;
    let verdict = {
        let mut l = ledger.lock();
        for (carrier, s) in [("a", &rig.a), ("b", &rig.b)] {
            for r in s.records() {
                if let Some(i) = index_of(r.text()) {
                    l.at_carrier.entry(i).or_default().push((carrier, r.at));
                }
            }
        }
        l.check(VALIDITY)
    };
    let mut counted = 0;
    let sources: Vec<(PathBuf, u16, u64)> = rig
        .nodes
        .lock()
        .iter()
        .map(|n| (n.log().to_path_buf(), n.ops, n.counted_before))
        .collect();
    let mut redeliveries = 0;
    for (log, ops, before) in &sources {
        counted += before + counted_duplicates(log, *ops).await;
        redeliveries += counted_redeliveries(log);
    }
    let Rig {
        dir,
        a,
        b,
        pa,
        pb,
        disk,
        nodes,
        ..
    } = rig;
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
        messages_sent: sent.load(Ordering::Relaxed),
        faults,
        verdict,
        duplicates_counted: counted,
        receipt_repeats_counted: redeliveries,
        wall_seconds: wall.elapsed().as_secs_f64(),
        dir,
    })
}

/// The load: rounds of 5 s at `rate`, each on a node that is up, until `run_for`.
fn spawn_load(
    rate: u32,
    nodes: &Arc<Mutex<Vec<Node>>>,
    ledger: &Arc<Mutex<Ledger>>,
    sent: &Arc<AtomicU64>,
    start: Instant,
    run_for: Duration,
) -> tokio::task::JoinHandle<()> {
    let (nodes, ledger, sent) = (nodes.clone(), ledger.clone(), sent.clone());
    tokio::spawn(async move {
        let mut next = 0u64;
        let mut k = 0usize;
        while start.elapsed() < run_for {
            let addr = {
                let ns = nodes.lock();
                let up: Vec<SocketAddr> = ns.iter().filter(|n| n.up()).map(Node::addr).collect();
                k += 1;
                up.get(k % up.len().max(1)).copied()
            };
            let Some(addr) = addr else {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            let from = Instant::now();
            let Ok(r) = loadgen::run(load_round(addr, rate, next, 100)).await else {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            next += r.sent.max(1);
            sent.fetch_add(r.sent, Ordering::Relaxed);
            record(&ledger, &r, from);
        }
    })
}

/// One 5 s load round of the campaigns: `rate` msg/s from message index `first`,
/// OTP validity, receipts collected for 0.5 s after the last answer.
pub(super) fn load_round(addr: SocketAddr, rate: u32, first: u64, window: usize) -> LoadConfig {
    let mut lc = LoadConfig::new(addr, "bank", BRAND_PW, u64::from(rate) * 5);
    lc.rate = Some(rate);
    lc.window = window;
    lc.first_index = first;
    lc.validity_period = VALIDITY_SMPP.into();
    lc.duration = Some(Duration::from_secs(5));
    lc.receipt_timeout = Duration::from_millis(500);
    lc
}

/// Where the fault schedule stands.
struct Schedule {
    rng: StdRng,
    start: Instant,
    cycle: Duration,
    next_kill: Instant,
    cycle_start: Instant,
    done_in_cycle: [bool; 5],
    next_cut: Instant,
}

/// The faults, until `run_for`: a node killed every 20-40 s, and in each cycle
/// (2 min at most) carrier A's binds flapping, B silent, A slow, the disk full,
/// Redis restarted.
async fn inject_faults(
    args: &SoakArgs,
    rig: &mut Rig,
    ledger: &Mutex<Ledger>,
    faults: &mut Faults,
    start: Instant,
    run_for: Duration,
) -> crate::Result<()> {
    let mut rng = StdRng::seed_from_u64(args.seed);
    let next_kill = start + Duration::from_secs(rng.random_range(20..=40));
    let mut s = Schedule {
        rng,
        start,
        cycle: run_for.min(Duration::from_secs(120)),
        next_kill,
        cycle_start: start,
        done_in_cycle: [false; 5],
        next_cut: start,
    };
    while start.elapsed() < run_for {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = Instant::now();
        if now >= s.next_kill && !args.skip.contains(&Fault::Kill) {
            kill_one(&mut s, rig, ledger, faults, now).await?;
        }
        let at = now.duration_since(s.cycle_start);
        if at >= s.cycle {
            s.cycle_start = now;
            s.done_in_cycle = [false; 5];
            continue;
        }
        cycle_fault(args, &mut s, rig, ledger, faults, now, at).await?;
    }
    Ok(())
}

/// Kill a node at random (SIGKILL), start it again a second later.
async fn kill_one(
    s: &mut Schedule,
    rig: &Rig,
    ledger: &Mutex<Ledger>,
    faults: &mut Faults,
    now: Instant,
) -> crate::Result<()> {
    let (i, ops) = {
        let ns = rig.nodes.lock();
        let i = s.rng.random_range(0..ns.len());
        (i, ns[i].ops)
    };
    // What this process counted dies with it: read it just before.
    let seen = metric(ops, POSSIBLE_DUPLICATES).await;
    {
        let mut ns = rig.nodes.lock();
        ns[i].counted_before += seen;
        ns[i].kill9();
    }
    ledger.lock().kills.push(now);
    // What the node wrote before it died still arrives at a carrier for as long as
    // the link delays it.
    window(ledger, None, now, Instant::now() + LINK_LATENCY + CUT_REACH);
    faults.kills += 1;
    note(s.start, "node killed");
    tokio::time::sleep(Duration::from_secs(1)).await;
    rig.nodes.lock()[i].start()?;
    s.next_kill = Instant::now() + Duration::from_secs(s.rng.random_range(20..=40));
    Ok(())
}

/// The fault of this point of the cycle (`at` into it): 0-45 %: flapping; 50-60 %:
/// B silent; 62-80 %: A slow; 82-92 %: disk full; 95 %: Redis restarted.
async fn cycle_fault(
    args: &SoakArgs,
    s: &mut Schedule,
    rig: &mut Rig,
    ledger: &Mutex<Ledger>,
    faults: &mut Faults,
    now: Instant,
    at: Duration,
) -> crate::Result<()> {
    let (start, cycle) = (s.start, s.cycle);
    let frac = at.as_secs_f64() / cycle.as_secs_f64();
    let on = |f: Fault| !args.skip.contains(&f);
    let done = &mut s.done_in_cycle;
    if frac < 0.45 && on(Fault::Flap) {
        if !done[0] {
            done[0] = true;
            faults.flap_episodes += 1;
        }
        if now >= s.next_cut {
            rig.pa.reset_all();
            // A submit the carrier took just before the cut may have lost its
            // response on the way back (the proxy's buffers go with the reset), and
            // the proxy's tasks carry the reset out just after.
            window(
                ledger,
                Some("a"),
                now.checked_sub(CUT_REACH).unwrap_or(now),
                Instant::now() + CUT_REACH,
            );
            faults.binds_cut += 1;
            note(start, "carrier a binds cut");
            s.next_cut = now + Duration::from_secs(2);
        }
    } else if (0.50..0.60).contains(&frac) && !done[1] && on(Fault::Silent) {
        done[1] = true;
        faults.silent_episodes += 1;
        note(start, "carrier b silent");
        rig.b.set_silent(true);
        tokio::time::sleep(Duration::from_secs(10).min(cycle / 10)).await;
        rig.b.set_silent(false);
        note(start, "carrier b answers again");
        window(ledger, Some("b"), now, Instant::now());
    } else if (0.62..0.80).contains(&frac) && !done[2] && on(Fault::Latency) {
        done[2] = true;
        faults.latency_episodes += 1;
        note(start, "carrier a latency 300 ms");
        rig.pa.set_latency(LINK_LATENCY);
        tokio::time::sleep(cycle.mul_f64(0.15)).await;
        rig.pa.set_latency(Duration::ZERO);
        note(start, "carrier a latency off");
    } else if (0.82..0.92).contains(&frac) && !done[3] && on(Fault::Disk) {
        done[3] = true;
        if let Some(d) = &rig.disk {
            faults.disk_full_episodes += 1;
            note(start, "disk filling");
            let before = refused(&rig.nodes).await;
            d.fill(0)?;
            tokio::time::sleep(cycle.mul_f64(0.08)).await;
            d.free();
            note(start, "disk freed");
            faults.refused_while_full += refused(&rig.nodes).await.saturating_sub(before);
        }
    } else if frac >= 0.95 && !done[4] && on(Fault::Redis) {
        done[4] = true;
        if let Some(r) = rig.redis.as_mut() {
            faults.redis_restarts += 1;
            note(start, "redis killed");
            r.kill9();
            tokio::time::sleep(Duration::from_secs(2)).await;
            if !r.spawn() {
                return Err(crate::LabError::Failed("redis did not come back".into()));
            }
            window(ledger, None, now, Instant::now());
        }
    }
    Ok(())
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
pub(super) fn record(ledger: &Mutex<Ledger>, r: &otpgw_sim::LoadReport, from: Instant) {
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
pub(super) async fn collect(
    nodes: &Mutex<Vec<Node>>,
    ledger: &Mutex<Ledger>,
    a: &SimHandle,
    b: &SimHandle,
) {
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
