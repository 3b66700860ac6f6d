//! A node of the campaign (an `otpgw serve` child process, through
//! `otpgw_sim::process`), and what is read from its metrics.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use otpgw_sim::process::ServeProcess;

/// The gateway's count of resends after a submit's answer was lost.
pub(super) const POSSIBLE_DUPLICATES: &str = "otpgw_carrier_possible_duplicates_total";

/// One gateway node: an `otpgw serve` child process, with its ops port and the
/// possible duplicates its killed processes counted.
pub(super) struct Node {
    pub(super) process: ServeProcess,
    pub(super) ops: u16,
    pub(super) counted_before: u64,
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
    pub(super) fn new(
        dir: &Path,
        name: &str,
        port: u16,
        ops: u16,
        config: &str,
    ) -> crate::Result<Self> {
        let process = ServeProcess::new(&own_exe()?, dir, name, port, config, "warn,otpgw=info")?;
        Ok(Self {
            process,
            ops,
            counted_before: 0,
        })
    }

    pub(super) fn start(&mut self) -> crate::Result<()> {
        self.process
            .spawn()
            .map_err(|e| crate::LabError::Failed(e.to_string()))
    }

    pub(super) fn kill9(&mut self) {
        self.process.kill9();
    }

    /// Whether the process is still running (not exited, not crashed).
    pub(super) fn running(&mut self) -> bool {
        self.process.running()
    }

    pub(super) async fn wait_up(&self, limit: Duration) -> crate::Result<()> {
        self.process
            .wait_listening(limit)
            .await
            .map_err(|e| crate::LabError::Failed(e.to_string()))
    }

    pub(super) fn up(&self) -> bool {
        self.process.listening()
    }

    pub(super) fn addr(&self) -> SocketAddr {
        self.process.addr()
    }

    pub(super) fn log(&self) -> &Path {
        self.process.log_path()
    }
}

/// Possible duplicates a node counted: resends after lost answers (metrics of the
/// running process) and messages recovered as possibly sent (its logs, which
/// outlive its processes).
pub(super) async fn counted_duplicates(log: &Path, ops: u16) -> u64 {
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

/// Receipts a node's recoveries (at its starts, and claims of a dead node's work)
/// found written to the brand before, unacknowledged: each may reach the brand
/// twice (`otpgw_receipts_possibly_redelivered_total`, logged by every recovery,
/// so the count outlives the killed processes).
pub(super) fn counted_redeliveries(log: &Path) -> u64 {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("receipts_possibly_redelivered="))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .sum()
}

/// A node's metrics page (empty when unreachable).
pub(super) async fn scrape(port: u16) -> String {
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
pub(super) async fn metric_lines(port: u16, prefixes: &[&str]) -> String {
    scrape(port)
        .await
        .lines()
        .filter(|l| prefixes.iter().any(|p| l.starts_with(p)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The sum of a metric's series on a node's ops listener (0 when unreachable).
pub(super) async fn metric(port: u16, name: &str) -> u64 {
    scrape(port)
        .await
        .lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}
