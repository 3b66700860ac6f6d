//! A small tmpfs (full-disk faults, for the store tests and the fault campaign):
//! mounted at a directory, filled on demand, unmounted when dropped. Mounting needs
//! root; without it [`Tmpfs::mount`] says so and the fault is skipped.

use std::path::{Path, PathBuf};

/// See the module docs.
#[derive(Debug)]
pub struct Tmpfs(PathBuf);

/// This process may not mount a tmpfs (not root?).
#[derive(Debug, thiserror::Error)]
#[error("cannot mount a tmpfs at {0} (not root?)")]
pub struct CannotMount(pub String);

impl Tmpfs {
    /// Mount a tmpfs of `kib` KiB at `dir` (created if missing).
    pub fn mount(dir: &Path, kib: u64) -> Result<Self, CannotMount> {
        let refused = || CannotMount(dir.display().to_string());
        std::fs::create_dir_all(dir).map_err(|_| refused())?;
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
            .arg(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            Ok(Self(dir.to_path_buf()))
        } else {
            Err(refused())
        }
    }

    /// Where it is mounted.
    pub fn dir(&self) -> &Path {
        &self.0
    }

    /// Fill it with a file, leaving about `room` bytes free; the file's path.
    pub fn fill(&self, room: u64) -> std::io::Result<PathBuf> {
        use std::io::Write;
        let filler = self.0.join("filler");
        let mut f = std::fs::File::create(&filler)?;
        let chunk = vec![0u8; 64 << 10];
        let mut written = 0u64;
        while f.write_all(&chunk).is_ok() {
            written += chunk.len() as u64;
        }
        f.set_len(written.saturating_sub(room))?;
        Ok(filler)
    }

    /// Remove what [`Tmpfs::fill`] wrote.
    pub fn free(&self) {
        let _ = std::fs::remove_file(self.0.join("filler"));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}
