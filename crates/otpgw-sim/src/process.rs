//! `otpgw serve` as a child process, for tests and the fault campaign: its config
//! file and log in a directory, started, signalled, killed and started again; and
//! [`free_port`], the one way every harness picks a port.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (free when asked; bound by the caller soon after).
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Why a process did not come up.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("cannot start {exe}: {source}")]
    Spawn {
        exe: String,
        #[source]
        source: std::io::Error,
    },
    #[error("otpgw serve did not listen on port {port} within {secs} s; its log:\n{log}")]
    NotListening { port: u16, secs: u64, log: String },
}

/// See the module docs.
#[derive(Debug)]
pub struct ServeProcess {
    exe: PathBuf,
    child: Option<std::process::Child>,
    /// The brand (SMPP) port it listens on.
    pub port: u16,
    cfg: PathBuf,
    log: PathBuf,
    /// `RUST_LOG` of the process.
    pub rust_log: String,
}

impl ServeProcess {
    /// A process of `exe serve` on `config`, written to `dir/<name>.toml`, logging
    /// to `dir/<name>.log`; not started yet.
    pub fn new(
        exe: &Path,
        dir: &Path,
        name: &str,
        port: u16,
        config: &str,
        rust_log: &str,
    ) -> std::io::Result<Self> {
        let cfg = dir.join(format!("{name}.toml"));
        std::fs::write(&cfg, config)?;
        Ok(Self {
            exe: exe.to_path_buf(),
            child: None,
            port,
            cfg,
            log: dir.join(format!("{name}.log")),
            rust_log: rust_log.into(),
        })
    }

    /// [`ServeProcess::new`] (named `otpgw`), started, listening.
    pub async fn start(
        exe: &Path,
        dir: &Path,
        port: u16,
        config: &str,
        rust_log: &str,
    ) -> Result<Self, ProcessError> {
        let mut p = Self::new(exe, dir, "otpgw", port, config, rust_log).map_err(|source| {
            ProcessError::Spawn {
                exe: exe.display().to_string(),
                source,
            }
        })?;
        p.spawn()?;
        p.wait_listening(Duration::from_secs(10)).await?;
        Ok(p)
    }

    /// Start the process (again, after a kill); its log is appended to.
    pub fn spawn(&mut self) -> Result<(), ProcessError> {
        let spawn_err = |source| ProcessError::Spawn {
            exe: self.exe.display().to_string(),
            source,
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(spawn_err)?;
        let child = std::process::Command::new(&self.exe)
            .args(["serve", "--config"])
            .arg(&self.cfg)
            .env("RUST_LOG", &self.rust_log)
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(spawn_err)?;
        self.child = Some(child);
        Ok(())
    }

    /// Wait until the brand port takes connections, at most `limit`.
    pub async fn wait_listening(&self, limit: Duration) -> Result<(), ProcessError> {
        let until = Instant::now() + limit;
        while !self.listening() {
            if Instant::now() > until {
                return Err(ProcessError::NotListening {
                    port: self.port,
                    secs: limit.as_secs(),
                    log: self.logs(),
                });
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Ok(())
    }

    /// Whether it runs and its brand port takes connections.
    pub fn listening(&self) -> bool {
        self.child.is_some() && std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
    }

    /// Whether it was started and not killed since (it may have exited by itself).
    pub fn is_started(&self) -> bool {
        self.child.is_some()
    }

    /// Whether the process is still running (not exited, not crashed).
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The brand port's address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Send a signal by name (HUP, TERM, ...).
    pub fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let _ = std::process::Command::new("kill")
                .args([&format!("-{sig}"), &c.id().to_string()])
                .status();
        }
    }

    /// Replace the config file (for a reload or the next start).
    pub fn write_config(&self, text: &str) -> std::io::Result<()> {
        std::fs::write(&self.cfg, text)
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then the exit status (killed after `limit`: `None`).
    pub async fn term(&mut self, limit: Duration) -> Option<i32> {
        let mut c = self.child.take()?;
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if let Ok(Some(st)) = c.try_wait() {
                return st.code();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = c.kill();
        let _ = c.wait();
        None
    }

    /// The log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Everything the process logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sum of a numeric field (`name=N`) over every "recovered state" log line.
    pub fn recovered(&self, field: &str) -> u64 {
        let key = format!("{field}=");
        self.logs()
            .lines()
            .filter(|l| l.contains("recovered state of the previous run"))
            .filter_map(|l| {
                l.split_whitespace()
                    .find_map(|w| w.strip_prefix(key.as_str()))
            })
            .filter_map(|v| v.parse::<u64>().ok())
            .sum()
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}
