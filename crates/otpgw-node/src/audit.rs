//! The audit log: one JSON line per admin change or refused admin call, each
//! carrying the SHA-256 of the line before it (the first line's is 64 zeros), so a
//! changed byte, a removed or reordered line, or a missing first line breaks the
//! chain at the first line after it ([`verify`], `otpgw audit verify FILE`). Each
//! line is written and fsync'd before the call is answered. The head hash (of the
//! last line) is logged at each append and served at `GET /admin/audit`, so a cut
//! tail can be caught against a copy of it kept elsewhere.
//!
//! A line holds: `time` (RFC 3339, UTC), `actor` (the token's name, or `peer <ip>`
//! for a call without a valid token), `action`, `target`, `result`, `prev`. Never a
//! token, a secret, a code or a phone number.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The `prev` of the first line.
pub const GENESIS: [u8; 32] = [0; 32];

/// Lower-case hex.
fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// An open audit log, appended to by the admin API.
pub struct Audit {
    path: PathBuf,
    inner: parking_lot::Mutex<Tail>,
}

struct Tail {
    file: File,
    /// The hash of the last line written.
    head: [u8; 32],
    lines: u64,
}

/// Why an audit log does not verify.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Broken {
    #[error("cannot read the audit log: {0}")]
    Read(String),
    #[error("line {line}: {why}")]
    Line { line: u64, why: String },
}

/// One event to record.
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    pub actor: &'a str,
    pub action: &'a str,
    pub target: &'a str,
    pub result: &'a str,
}

impl Audit {
    /// Open (or create) the log at `path`, checking the chain it already holds
    /// (a broken chain refuses the start: someone changed the file).
    pub fn open(path: &Path) -> Result<Self, Broken> {
        let (lines, head) = if path.exists() {
            verify(path)?
        } else {
            (0, GENESIS)
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Broken::Read(format!("{}: {e}", path.display())))?;
        tracing::info!(path = %path.display(), lines, head = %hex(&head), "audit log open");
        Ok(Self {
            path: path.to_path_buf(),
            inner: parking_lot::Mutex::new(Tail { file, head, lines }),
        })
    }

    /// Append one line and fsync it; `Err` when it could not be made durable (the
    /// caller refuses the change).
    pub fn record(&self, e: Event<'_>) -> std::io::Result<()> {
        let mut t = self.inner.lock();
        let line = serde_json::json!({
            "time": otpgw_proto::time::rfc3339(otpgw_core::clock::now_ms()),
            "actor": e.actor,
            "action": e.action,
            "target": e.target,
            "result": e.result,
            "prev": hex(&t.head),
        })
        .to_string();
        t.file.write_all(format!("{line}\n").as_bytes())?;
        t.file.sync_data()?;
        t.head = Sha256::digest(line.as_bytes()).into();
        t.lines += 1;
        metrics::counter!("otpgw_audit_lines_total").increment(1);
        tracing::info!(path = %self.path.display(), lines = t.lines, head = %hex(&t.head), action = e.action, "audit line written");
        Ok(())
    }

    /// (lines, head hash in hex).
    pub fn head(&self) -> (u64, String) {
        let t = self.inner.lock();
        (t.lines, hex(&t.head))
    }
}

/// Check the chain of the log at `path`: (lines, head hash) when it holds, else the
/// first line that breaks it.
pub fn verify(path: &Path) -> Result<(u64, [u8; 32]), Broken> {
    let f = File::open(path).map_err(|e| Broken::Read(format!("{}: {e}", path.display())))?;
    let mut prev = GENESIS;
    let mut n = 0u64;
    for line in BufReader::new(f).lines() {
        n += 1;
        let line = line.map_err(|e| Broken::Line {
            line: n,
            why: format!("unreadable: {e}"),
        })?;
        let v: serde_json::Value = serde_json::from_str(&line).map_err(|_| Broken::Line {
            line: n,
            why: "not a JSON audit line".into(),
        })?;
        let said = v["prev"].as_str().unwrap_or("");
        if said != hex(&prev) {
            let why = if n == 1 {
                "the first line does not start the chain (a line before it was removed?)"
            } else {
                "its prev is not the hash of the line before (that line was changed, removed or moved)"
            };
            return Err(Broken::Line {
                line: n,
                why: why.into(),
            });
        }
        prev = Sha256::digest(line.as_bytes()).into();
    }
    Ok((n, prev))
}

/// [`verify`] for the command line: the head as hex.
pub fn verify_hex(path: &Path) -> Result<(u64, String), Broken> {
    verify(path).map(|(n, h)| (n, hex(&h)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("otpgw-audit-{name}-{}", std::process::id()));
        let _ = std::fs::remove_file(&p);
        p
    }

    fn write(p: &Path, n: usize) {
        let a = Audit::open(p).unwrap();
        for i in 0..n {
            let target = format!("carrier-{i}");
            a.record(Event {
                actor: "alice",
                action: "pause",
                target: &target,
                result: "ok",
            })
            .unwrap();
        }
    }

    fn lines(p: &Path) -> Vec<String> {
        std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .map(String::from)
            .collect()
    }

    fn put(p: &Path, l: &[String]) {
        std::fs::write(p, l.iter().map(|x| format!("{x}\n")).collect::<String>()).unwrap();
    }

    #[test]
    fn the_chain_holds_across_reopens() {
        let p = tmp("ok");
        write(&p, 3);
        write(&p, 2);
        let (n, head) = verify_hex(&p).unwrap();
        assert_eq!(n, 5);
        assert_eq!(Audit::open(&p).unwrap().head(), (5, head));
        assert!(lines(&p)[0].contains(&format!("\"prev\":\"{}\"", "0".repeat(64))));
    }

    #[test]
    fn tampering_names_the_first_broken_line() {
        let p = tmp("tamper");
        write(&p, 5);
        let good = lines(&p);
        // A changed byte in line 2: line 3 no longer follows.
        let mut l = good.clone();
        l[1] = l[1].replace("carrier-1", "carrier-9");
        put(&p, &l);
        assert!(matches!(verify(&p), Err(Broken::Line { line: 3, .. })));
        // A removed line (the third): the next one, now line 3, breaks.
        let mut l = good.clone();
        l.remove(2);
        put(&p, &l);
        assert!(matches!(verify(&p), Err(Broken::Line { line: 3, .. })));
        // Two lines swapped.
        let mut l = good.clone();
        l.swap(1, 2);
        put(&p, &l);
        assert!(matches!(verify(&p), Err(Broken::Line { line: 2, .. })));
        // The first line removed.
        put(&p, &good[1..]);
        assert!(matches!(verify(&p), Err(Broken::Line { line: 1, .. })));
        // Not JSON.
        let mut l = good.clone();
        l[3] = "garbage".into();
        put(&p, &l);
        assert!(matches!(verify(&p), Err(Broken::Line { line: 4, .. })));
        // A broken log refuses to open (nothing is appended to it).
        assert!(Audit::open(&p).is_err());
        // Intact again: verifies, and its head is the last line's hash.
        put(&p, &good);
        let (_, head) = verify(&p).unwrap();
        let last: [u8; 32] = Sha256::digest(good[4].as_bytes()).into();
        assert_eq!(head, last);
    }
}
