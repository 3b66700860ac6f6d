//! The crash-child harness: a test runs its own test binary again as a child that
//! writes flat out and prints `ACK <id>` for each write the store acknowledged,
//! kills it with SIGKILL at a moment that varies by round, and checks that what was
//! acknowledged survived.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use otpgw_core::store::MessageLog;

use crate::sample::message;

/// In the child, the path the parent passed in `env`; `None` in the parent (and
/// in an ordinary test run), where the child test does nothing.
pub fn child_arg(env: &str) -> Option<PathBuf> {
    std::env::var_os(env).map(PathBuf::from)
}

/// Child side: 64 writers accept messages (ids from 1 up, a million apart) as fast
/// as the store takes them; each acknowledged id is printed, after `then` did what
/// else the test wants done with it. Runs until killed.
pub async fn ack_flat_out<S>(s: Arc<S>, then: fn(&S, u64))
where
    S: MessageLog + ?Sized,
{
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for w in 0..64u64 {
        let (s, tx) = (s.clone(), tx.clone());
        tokio::spawn(async move {
            for i in 0..1_000_000u64 {
                let id = w * 1_000_000 + i + 1;
                if s.accept(&message(id)).await.is_ok() {
                    let _ = tx.send(id);
                    then(&s, id);
                }
            }
        });
    }
    drop(tx);
    let mut out = std::io::stdout().lock();
    while let Some(id) = rx.recv().await {
        let _ = writeln!(out, "ACK {id}");
        let _ = out.flush();
    }
}

/// Parent side: for each of `rounds`, run the test `child_test` (its full path,
/// e.g. `embedded::tests::crash_child`) of this test binary with `env` set to
/// `arg`, SIGKILL it after `run_ms(round)` milliseconds, and hand the ids it
/// acknowledged to `check(round, acked)`. Returns how many were acknowledged in all.
pub fn kill_rounds(
    child_test: &str,
    env: &str,
    arg: &Path,
    rounds: u64,
    run_ms: impl Fn(u64) -> u64,
    mut check: impl FnMut(u64, &[u64]),
) -> usize {
    let exe = std::env::current_exe().expect("this test binary");
    let mut total = 0;
    for round in 0..rounds {
        let mut child = std::process::Command::new(&exe)
            .args(["--exact", child_test, "--nocapture", "--test-threads=1"])
            .env(env, arg)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("the crash child");
        let stdout = child.stdout.take().expect("its stdout");
        let reader = std::thread::spawn(move || {
            std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .filter_map(|l| l.strip_prefix("ACK ").and_then(|x| x.parse::<u64>().ok()))
                .collect::<Vec<u64>>()
        });
        // Let it run for a varying time, then kill it mid-flight.
        std::thread::sleep(Duration::from_millis(run_ms(round)));
        let _ = std::process::Command::new("kill")
            .args(["-9", &child.id().to_string()])
            .status();
        let _ = child.wait();
        let acked = reader.join().expect("the reader");
        assert!(!acked.is_empty(), "nothing acknowledged in round {round}");
        check(round, &acked);
        total += acked.len();
    }
    total
}
