//! `otpgw fuzz-live`: the live-server fuzzer ([`otpgw_sim::fuzz`]) against a real
//! `otpgw serve` process with a simulated carrier, then a check that the process is
//! still running and still carries a normal brand's traffic end to end.

use std::time::Duration;

use crate::Context;

use otpgw_sim::fuzz::{self, FuzzConfig};
use otpgw_sim::loadgen::{self, LoadConfig};

use otpgw_sim::process::free_port;

use super::node::{Node, metric_lines};
use super::{BRAND_PW, config, sim};

/// `otpgw fuzz-live` options.
#[derive(Debug, Clone, clap::Args)]
pub struct FuzzLiveArgs {
    /// Mutated PDUs to send.
    #[arg(long, default_value_t = 100_000)]
    pub pdus: u64,
    /// Sessions at once.
    #[arg(long, default_value_t = 4)]
    pub sessions: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Write the report (JSON) here.
    #[arg(long)]
    pub report: Option<std::path::PathBuf>,
}

/// Run it; fails on a hang, a dead server or a normal brand that no longer gets
/// through.
pub async fn run(args: FuzzLiveArgs) -> crate::Result<()> {
    let dir = std::env::temp_dir().join(format!("otpgw-fuzz-live-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let (a, b) = (sim().await?, sim().await?);
    let (port, ops) = (free_port()?, free_port()?);
    let store = format!("path = \"{}\"", dir.join("otpgw.redb").display());
    let text = config("fuzz", port, ops, &store, a.addr(), b.addr())
        .replace(
            "shutdown_grace_secs = 2\n",
            "shutdown_grace_secs = 2\nmax_unbound_per_ip = 100\nmax_connections_per_ip = 1000\n",
        )
        .replace(
            "system_id = \"bank\"\n",
            "system_id = \"bank\"\nmax_binds = 1000\n",
        );
    let mut node = Node::new(&dir, "fuzz", port, ops, &text)?;
    node.start()?;
    node.wait_up(Duration::from_secs(30)).await?;

    let mut fc = FuzzConfig::new(node.addr(), "bank", BRAND_PW, args.pdus);
    fc.sessions = args.sessions;
    fc.seed = args.seed;
    let r = fuzz::run(fc).await;
    println!(
        "otpgw fuzz-live: {} mutated PDUs in {} batches over {:.1} s ({:.0}/s); probes answered {}, sessions closed by the server {}, desynced then closed {}, hangs {}, bind failures {}, deliver_sm answered {}",
        r.pdus_sent,
        r.batches,
        r.seconds,
        r.pdus_sent as f64 / r.seconds.max(1e-9),
        r.probes_answered,
        r.closed_by_server,
        r.desynced_then_closed,
        r.hangs,
        r.bind_failures,
        r.deliver_sm
    );
    println!("answers by status: {:?}", r.statuses);
    let alive = node.running();
    // A normal brand, afterwards, end to end.
    let mut lc = LoadConfig::new(node.addr(), "bank", BRAND_PW, 1_000);
    lc.receipt_timeout = Duration::from_secs(20);
    let normal = loadgen::run(lc)
        .await
        .context("a normal brand could not bind")?;
    let mut own = 0;
    for n in normal.ids.keys() {
        if normal.states.contains_key(n) {
            own += 1;
        }
    }
    println!(
        "afterwards: server running {alive}; a normal brand: {} accepted of 1000, {own} with their receipt ({} receipts in all, {} for earlier sessions' messages, {} duplicates)",
        normal.accepted,
        normal.receipts,
        normal.foreign_receipts.len(),
        normal.duplicate_receipts
    );
    let failed = r.hangs > 0 || !alive || normal.accepted != 1_000 || own != 1_000;
    if failed {
        // What the gateway says about itself, for the post-mortem.
        let m = metric_lines(ops, &["otpgw_receipts", "otpgw_messages", "otpgw_queue"]).await;
        eprintln!("gateway metrics:\n{m}");
        let log = std::fs::read_to_string(node.log()).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        eprintln!("gateway log (last lines):");
        for l in tail.iter().rev() {
            eprintln!("  {l}");
        }
    }
    if let Some(p) = &args.report {
        std::fs::write(p, serde_json::to_string_pretty(&r)?)?;
    }
    drop(node);
    a.shutdown();
    b.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
    if failed {
        return Err(crate::LabError::Failed(
            "the live fuzz found a fault".into(),
        ));
    }
    if r.pdus_sent < args.pdus {
        return Err(crate::LabError::Failed(format!(
            "only {} of {} PDUs were sent",
            r.pdus_sent, args.pdus
        )));
    }
    println!("clean: every batch answered or closed, the server lives and serves");
    Ok(())
}
