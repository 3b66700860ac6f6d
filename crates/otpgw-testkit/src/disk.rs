//! Full-disk test support for the stores: a small tmpfs (`otpgw_sim::tmpfs`), and
//! the steps every full-disk test takes on it.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use otpgw_core::clock::now_ms;
use otpgw_core::store::{Store, StoreError};

use otpgw_sim::tmpfs::Tmpfs;

use crate::sample::message;

/// A tmpfs of `kib` KiB mounted at a directory, unmounted when dropped.
pub struct SmallDisk(pub Tmpfs);

impl SmallDisk {
    /// The disk, or `None` (the test says it is skipped) when this process may not
    /// mount, e.g. not root; with `OTPGW_REQUIRE_TMPFS` set that is a failure.
    pub fn for_test(dir: &Path, kib: u32) -> Option<Self> {
        match Tmpfs::mount(dir, u64::from(kib)) {
            Ok(t) => Some(Self(t)),
            Err(e) => {
                assert!(
                    std::env::var_os("OTPGW_REQUIRE_TMPFS").is_none(),
                    "mounting a tmpfs is required (OTPGW_REQUIRE_TMPFS): {e}"
                );
                eprintln!("SKIPPED: {e}");
                None
            }
        }
    }

    /// Where it is mounted.
    pub fn dir(&self) -> &Path {
        self.0.dir()
    }

    /// Fill the disk with a file, leaving about `room` bytes free; its path.
    pub fn fill(&self, room: u64) -> PathBuf {
        self.0.fill(room).expect("filler")
    }
}

/// Accept messages with `ids` until three are refused as unavailable (the disk is
/// full); the ids acknowledged before that, at least one.
pub async fn accept_until_refused<S: Store>(s: &S, ids: impl Iterator<Item = u64>) -> Vec<u64> {
    let mut acked = Vec::new();
    let mut refused = 0;
    for i in ids {
        match s.accept(&message(i)).await {
            Ok(()) => acked.push(i),
            Err(StoreError::Unavailable(_)) => {
                refused += 1;
                if refused == 3 {
                    break;
                }
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(
        refused == 3 && !acked.is_empty(),
        "acked {}, refused {refused}",
        acked.len()
    );
    assert!(!s.is_healthy(), "unhealthy while the disk is full");
    acked
}

/// Every id of `acked` is among the messages `s` recovers.
pub fn assert_recovered<S: Store>(s: &S, acked: &[u64]) {
    let there: HashSet<u64> = s
        .recover(now_ms())
        .expect("recover")
        .unconfirmed
        .iter()
        .map(|(m, _)| m.id.0)
        .collect();
    assert!(
        acked.iter().all(|i| there.contains(i)),
        "acknowledged but lost"
    );
}
