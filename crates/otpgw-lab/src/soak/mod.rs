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

mod campaign;
pub mod failover;
pub mod fuzz_live;
pub mod ledger;
mod node;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use otpgw_sim::{SimConfig, SimHandle};

use ledger::Verdict;

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
    /// Receipts the gateway's recoveries counted as possibly delivered twice to the
    /// brand (`otpgw_receipts_possibly_redelivered_total`, from the nodes' logs).
    pub receipt_repeats_counted: u64,
    pub wall_seconds: f64,
    /// Where the nodes' configs and logs are (removed when the run is clean).
    #[serde(skip)]
    pub dir: PathBuf,
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
    let r = campaign::campaign(&args).await?;
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
        "ledger: {} sent, {} acknowledged; lost {}, expired unsent (brand told) {}, receipts missing {}, duplicate receipts {} ({} of them not across a node kill; {} counted by the gateway), conflicting receipts {}, late sends {}; duplicates at carriers {} ({} outside any fault window; {} counted by the gateway), fallbacks {}, unknown receipts {}, sent though refused {} ({} of them not across a node kill)",
        r.messages_sent,
        v.acked,
        v.lost,
        v.expired_unsent,
        v.missing_receipts,
        v.duplicate_receipts,
        v.duplicate_receipts_unexplained,
        r.receipt_repeats_counted,
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
    // Every receipt the brand got twice is one the gateway counted (only a crash
    // of otpgw repeats one: SMPP cannot acknowledge a deliver_sm_resp).
    if !v.clean()
        || v.duplicates_at_carrier > r.duplicates_counted
        || v.duplicate_receipts > r.receipt_repeats_counted
    {
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
        "clean: nothing acknowledged lost, every receipt arrived (repeated only across a node kill, and each repeat counted), no resend outside a fault, nothing late"
    );
    Ok(())
}
