//! `otpgw failover` (run by `scripts/failover.sh`): Redis primaries fail under load
//! and nothing acknowledged is lost, checked by the campaign's independent
//! [`ledger`](super::ledger).
//!
//! The rig, all real processes on 127.0.0.1: a Redis primary, two replicas and three
//! Sentinels ([`otpgw_sim::redis_ha`], failure detection after 1 s), two `otpgw
//! serve` nodes that find the primary through the Sentinels and wait for one replica
//! per batch (`redis_min_replicas = 1`), two simulated carriers, and a brand load of
//! `--rate` messages a second split over both nodes.
//!
//! Each round, after `--settle-secs` of load:
//! - every third round (the second, fifth, ...) first kills a replica (SIGKILL) and
//!   starts it again (it resyncs under load);
//! - even rounds kill the primary (SIGKILL); odd rounds stop it (SIGSTOP) past the
//!   Sentinels' down-after, so that a stale primary comes back (SIGCONT) after the
//!   promotion and must take no write;
//! - the round waits for the Sentinels to promote a replica (a failover), then
//!   starts the old primary again or lets it go on, and waits for the replicas to be
//!   in sync.
//!
//! With `--cluster` the nodes are on a Redis Cluster instead
//! ([`otpgw_sim::redis_cluster`]: three shards of a primary and a replica, from the
//! shipped `deploy/redis-cluster/redis.conf`, `redis_min_replicas = 1`), and each
//! round does the same to one shard's primary (the next shard each round): the
//! cluster itself promotes that shard's replica.
//!
//! At the end the load stops, receipts are collected, and the ledger is checked:
//! nothing acknowledged lost, every receipt delivered, duplicates only across a
//! failover and never more than the nodes counted, nothing the brand was refused
//! sent. `max_unavailable_ms` is the longest time a brand bound to one node saw no
//! acceptance.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use otpgw_sim::loadgen;
use otpgw_sim::process::free_port;
use otpgw_sim::redis_cluster::TestCluster;
use otpgw_sim::redis_ha::{MASTER, TestHa};

use super::campaign::{collect, load_round, record};
use super::ledger::{Ledger, Verdict, Window};
use super::node::{Node, counted_duplicates};
use super::{VALIDITY, config, index_of, sim};

/// The Sentinels call a member down after this long without an answer.
const DOWN_AFTER: Duration = Duration::from_millis(1000);
/// Most time a round waits for a promotion.
const PROMOTION_LIMIT: Duration = Duration::from_secs(30);
/// Message indexes of node `k`'s load start at `k * NODE_SPAN`.
const NODE_SPAN: u64 = 4_000_000_000;

/// `otpgw failover` options.
#[derive(Debug, Clone, clap::Args)]
pub struct FailoverArgs {
    /// Failovers to cause.
    #[arg(long, default_value_t = 10)]
    pub rounds: u32,
    /// Messages per second offered (over both nodes).
    #[arg(long, default_value_t = 5000)]
    pub rate: u32,
    /// Seconds of load before each round (and after the last).
    #[arg(long, default_value_t = 8)]
    pub settle_secs: u64,
    /// One round (a primary killed, a replica killed first), for the test suite.
    #[arg(long)]
    pub smoke: bool,
    /// Write the report (JSON) here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Keep the nodes' configs and logs even when the run is clean.
    #[arg(long)]
    pub keep: bool,
    /// On a Redis Cluster (three shards, a replica each) instead of Sentinels.
    #[arg(long)]
    pub cluster: bool,
}

/// The Redis servers of a run: a Sentinel set, or a Cluster.
enum Servers {
    Ha(TestHa),
    Cluster(TestCluster),
}

impl Servers {
    fn start(cluster: bool) -> crate::Result<Self> {
        let s = if cluster {
            TestCluster::start_with_replicas("failover", 3, 2).map(Servers::Cluster)
        } else {
            TestHa::start("failover", 2, DOWN_AFTER).map(Servers::Ha)
        };
        s.ok_or_else(|| {
            crate::LabError::Failed(
                "redis-server and redis-sentinel are needed (scripts/test-deps.sh)".into(),
            )
        })
    }

    /// The primary whose failure the round causes: the Sentinels' primary, or
    /// on a Cluster the next shard's each round.
    fn primary(&self, round: u32) -> Option<usize> {
        match self {
            Servers::Ha(ha) => ha.primary(),
            Servers::Cluster(c) => {
                let p = c.primaries();
                p.get(round as usize % p.len().max(1)).copied()
            }
        }
    }

    /// A replica (of `primary` with Sentinels; of any primary on a Cluster).
    fn replica_of(&self, primary: usize) -> Option<usize> {
        match self {
            Servers::Ha(ha) => (0..ha.servers.len()).find(|i| *i != primary),
            Servers::Cluster(c) => {
                let p = c.primaries();
                (0..c.shards.len()).find(|i| !p.contains(i))
            }
        }
    }

    fn server(&mut self, i: usize) -> &mut otpgw_sim::redis_server::TestRedis {
        match self {
            Servers::Ha(ha) => &mut ha.servers[i],
            Servers::Cluster(c) => &mut c.shards[i],
        }
    }

    /// Whether the replicas are in sync again within `within`.
    fn resynced(&self, within: Duration) -> bool {
        match self {
            Servers::Ha(ha) => ha.wait_replicas(within),
            Servers::Cluster(c) => c.replicas_synced(1, within),
        }
    }

    /// What took over from `old` within `within` (a member, or on a Cluster "its
    /// replica").
    fn promoted(&self, old: usize, within: Duration) -> Option<String> {
        match self {
            Servers::Ha(ha) => ha.wait_failover(old, within).map(|n| format!("member {n}")),
            Servers::Cluster(c) => c
                .wait_promoted(old, within)
                .then(|| "its replica".to_string()),
        }
    }

    fn describe(&self) -> String {
        match self {
            Servers::Ha(ha) => ha.describe(),
            Servers::Cluster(c) => c.describe(),
        }
    }

    /// The `[store]` lines that say where Redis is.
    fn store_lines(&self) -> String {
        let quoted = |v: Vec<String>| {
            v.iter()
                .map(|s| format!("\"{s}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            Servers::Ha(ha) => format!(
                "redis_sentinels = [{}]\nredis_master_name = \"{MASTER}\"",
                quoted(ha.sentinel_addrs())
            ),
            Servers::Cluster(c) => format!(
                "redis_cluster = [{}]\nredis_partitions = 16",
                quoted(c.nodes())
            ),
        }
    }
}

/// The report (`--json`; checks read `failovers`, `acked`, `lost`, `duplicates`,
/// `duplicates_counted`, `max_unavailable_ms`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct FailoverReport {
    pub failovers: u32,
    pub acked: u64,
    pub lost: u64,
    /// Messages a carrier received more than once.
    pub duplicates: u64,
    /// Possible duplicates the nodes counted (`otpgw_carrier_possible_duplicates_total`).
    pub duplicates_counted: u64,
    /// Longest time a brand bound to one node got no acceptance (ms).
    pub max_unavailable_ms: u64,
    pub rounds: u32,
    pub rate: u32,
    pub messages_sent: u64,
    /// Submits refused (a temporary status) while Redis failed over.
    pub refused: u64,
    /// Each round: what was done and how long the promotion took (ms).
    pub round_log: Vec<String>,
    /// Each time a node accepted nothing for more than a second: which node, from
    /// when (seconds from the start), how long.
    pub unavailable: Vec<String>,
    /// The nodes' count of moves to a new primary.
    pub node_failovers_counted: u64,
    pub verdict: Verdict,
    pub wall_seconds: f64,
}

/// Run the campaign, print and write its report; fails when the checker finds a
/// fault.
pub async fn run(mut args: FailoverArgs) -> crate::Result<()> {
    if args.smoke {
        args.rounds = 1;
        args.settle_secs = args.settle_secs.min(4);
    }
    let (r, dir) = campaign(&args).await?;
    let v = &r.verdict;
    println!(
        "otpgw failover: {} failovers at {}/s offered; {} sent, {} acknowledged, {} refused meanwhile",
        r.failovers, r.rate, r.messages_sent, r.acked, r.refused
    );
    for l in &r.round_log {
        println!("  {l}");
    }
    for u in &r.unavailable {
        println!("  no acceptance: {u}");
    }
    println!(
        "ledger: lost {}, receipts missing {}, duplicates at carriers {} ({} outside a failover; {} counted by the nodes), duplicate receipts {} ({} outside a failover), sent though refused {}, late {}; longest time without an acceptance {} ms",
        r.lost,
        v.missing_receipts,
        r.duplicates,
        v.duplicates_unexplained,
        r.duplicates_counted,
        v.duplicate_receipts,
        v.duplicate_receipts_unexplained,
        v.sent_though_refused,
        v.late,
        r.max_unavailable_ms
    );
    if let Some(p) = &args.json {
        std::fs::write(p, serde_json::to_string_pretty(&r)?)?;
    }
    if !v.clean() || r.duplicates > r.duplicates_counted || r.failovers < args.rounds {
        for x in &v.samples {
            println!("  sample: {x}");
        }
        return Err(crate::LabError::Failed(format!(
            "the checker found faults (the nodes' logs are kept in {})",
            dir.display()
        )));
    }
    if args.keep {
        println!("the nodes' logs are in {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    println!(
        "clean: nothing acknowledged lost across {} failovers",
        r.failovers
    );
    Ok(())
}

/// The rig up: Redis, Sentinels, carriers, two nodes.
async fn rig(
    dir: &std::path::Path,
    cluster: bool,
) -> crate::Result<(
    Servers,
    otpgw_sim::SimHandle,
    otpgw_sim::SimHandle,
    Vec<Node>,
)> {
    let ha = Servers::start(cluster)?;
    let (a, b) = (sim().await?, sim().await?);
    let mut nodes = Vec::new();
    for name in ["n1", "n2"] {
        let store = format!(
            "backend = \"redis\"\n{}\nnode_id = \"{name}\"\nredis_prefix = \"fo\"\nredis_min_replicas = 1\nredis_replica_timeout_ms = 500",
            ha.store_lines()
        );
        let (port, ops) = (free_port()?, free_port()?);
        let text = config(name, port, ops, &store, a.addr(), b.addr());
        let mut n = Node::new(dir, name, port, ops, &text)?;
        n.start()?;
        nodes.push(n);
    }
    for n in &nodes {
        n.wait_up(Duration::from_secs(30)).await?;
    }
    Ok((ha, a, b, nodes))
}

async fn campaign(args: &FailoverArgs) -> crate::Result<(FailoverReport, PathBuf)> {
    let wall = Instant::now();
    let dir = std::env::temp_dir().join(format!("otpgw-failover-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let (mut ha, a, b, nodes) = rig(&dir, args.cluster).await?;
    let ledger = Arc::new(Mutex::new(Ledger {
        start: Some(Instant::now()),
        ..Default::default()
    }));
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let per_node = (args.rate / 2).max(1);
    let loads: Vec<_> = nodes
        .iter()
        .enumerate()
        .map(|(k, n)| {
            tokio::spawn(load(
                n.addr(),
                k as u64 * NODE_SPAN,
                per_node,
                ledger.clone(),
                stop.clone(),
                sent.clone(),
                refused.clone(),
            ))
        })
        .collect();
    let settle = Duration::from_secs(args.settle_secs);
    let mut failovers = 0;
    let mut round_log = Vec::new();
    for round in 0..args.rounds {
        tokio::time::sleep(settle).await;
        let at = ledger
            .lock()
            .start
            .map_or(0.0, |t| t.elapsed().as_secs_f64());
        let line = tokio::task::block_in_place(|| one_round(&mut ha, round, args.smoke, &ledger))?;
        let line = format!("at {at:.1} s: {line}");
        eprintln!("round {round}: {line}");
        round_log.push(format!("round {round}: {line}"));
        failovers += 1;
    }
    tokio::time::sleep(settle).await;
    stop.store(true, Ordering::Relaxed);
    let start = ledger.lock().start.unwrap_or(wall);
    let mut max_gap = Duration::ZERO;
    let mut unavailable = Vec::new();
    for (k, l) in loads.into_iter().enumerate() {
        for (at, d) in l.await? {
            max_gap = max_gap.max(d);
            unavailable.push(format!(
                "n{} from {:.1} s: {} ms",
                k + 1,
                at.saturating_duration_since(start).as_secs_f64(),
                d.as_millis()
            ));
        }
    }
    let shared = Arc::new(Mutex::new(nodes));
    collect(&shared, &ledger, &a, &b).await;
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
    let mut moved = 0;
    let sources: Vec<(PathBuf, u16)> = shared
        .lock()
        .iter()
        .map(|n| (n.log().to_path_buf(), n.ops))
        .collect();
    for (log, ops) in &sources {
        counted += counted_duplicates(log, *ops).await;
        moved += super::node::metric(*ops, "otpgw_store_redis_failovers_total").await;
    }
    drop(shared);
    a.shutdown();
    b.shutdown();
    drop(ha);
    Ok((
        FailoverReport {
            failovers,
            acked: verdict.acked,
            lost: verdict.lost,
            duplicates: verdict.duplicates_at_carrier,
            duplicates_counted: counted,
            max_unavailable_ms: u64::try_from(max_gap.as_millis()).unwrap_or(u64::MAX),
            rounds: args.rounds,
            rate: args.rate,
            messages_sent: sent.load(Ordering::Relaxed),
            refused: refused.load(Ordering::Relaxed),
            round_log,
            unavailable,
            node_failovers_counted: moved,
            verdict,
            wall_seconds: wall.elapsed().as_secs_f64(),
        },
        dir,
    ))
}

/// One round (see the module docs); blocking (it waits on the Redis processes).
/// What it did, for the report.
fn one_round(
    set: &mut Servers,
    round: u32,
    smoke: bool,
    ledger: &Mutex<Ledger>,
) -> crate::Result<String> {
    let failed = |what: &str| crate::LabError::Failed(format!("round {round}: {what}"));
    let old = set
        .primary(round)
        .ok_or_else(|| failed("no primary named"))?;
    let mut did = Vec::new();
    if round % 3 == 1 || smoke {
        let replica = set.replica_of(old).ok_or_else(|| failed("no replica"))?;
        let from = Instant::now();
        set.server(replica).kill9();
        std::thread::sleep(Duration::from_millis(1500));
        if !set.server(replica).spawn() {
            return Err(failed("a killed replica did not start again"));
        }
        if !set.resynced(Duration::from_secs(60)) {
            return Err(failed(&format!(
                "the replicas did not resync within 60 s: {}",
                set.describe()
            )));
        }
        fault_window(ledger, from);
        did.push(format!("replica {replica} killed and resynced"));
    }
    let stale = round % 2 == 1 && !smoke;
    let from = Instant::now();
    if stale {
        set.server(old).signal("STOP");
    } else {
        set.server(old).kill9();
    }
    let new = set.promoted(old, PROMOTION_LIMIT);
    let took = from.elapsed();
    if stale {
        set.server(old).signal("CONT");
    } else if !set.server(old).spawn() {
        return Err(failed("the old primary did not start again"));
    }
    let new = new.ok_or_else(|| failed(&format!("no replica was promoted: {}", set.describe())))?;
    if !set.resynced(Duration::from_secs(60)) {
        return Err(failed(&format!(
            "the replicas did not sync with the new primary within 60 s: {}",
            set.describe()
        )));
    }
    fault_window(ledger, from);
    let (what, detection) = match set {
        Servers::Ha(_) => ("primary", "down-after"),
        Servers::Cluster(_) => ("shard primary", "cluster-node-timeout"),
    };
    did.push(format!(
        "{what} {old} {}, {new} promoted in {} ms",
        if stale {
            format!("stopped past {detection}, then continued (stale)")
        } else {
            "killed".into()
        },
        took.as_millis()
    ));
    Ok(did.join("; "))
}

/// A failover may leave a send's or a receipt's fate unknown to a node: duplicates
/// across it are explained (and must be counted by the nodes).
fn fault_window(ledger: &Mutex<Ledger>, from: Instant) {
    ledger.lock().windows.push(Window {
        carrier: None,
        from,
        to: Instant::now() + Duration::from_secs(2),
    });
}

/// Times a brand on one node got no acceptance for longer than this are listed.
const LONG_GAP: Duration = Duration::from_millis(1000);

/// One node's load: rounds of 5 s at `rate` until `stop`. Returns each time
/// without an acceptance longer than [`LONG_GAP`] (when it began, how long),
/// across rounds.
async fn load(
    addr: SocketAddr,
    first: u64,
    rate: u32,
    ledger: Arc<Mutex<Ledger>>,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
) -> Vec<(Instant, Duration)> {
    let mut next = first;
    let mut last_accept: Option<Instant> = None;
    let mut gaps = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let from = Instant::now();
        let Ok(r) = loadgen::run(load_round(addr, rate, next, 200)).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        next += r.sent.max(1);
        sent.fetch_add(r.sent, Ordering::Relaxed);
        refused.fetch_add(r.refused.len() as u64, Ordering::Relaxed);
        if let (Some(prev), Some(f)) = (last_accept, r.first_accept) {
            gaps.push((prev, f.saturating_duration_since(prev)));
        }
        if let Some(at) = r.longest_accept_gap_from {
            gaps.push((at, r.longest_accept_gap));
        }
        last_accept = r.last_accept.or(last_accept);
        record(&ledger, &r, from);
    }
    gaps.retain(|(_, d)| *d > LONG_GAP);
    gaps
}
