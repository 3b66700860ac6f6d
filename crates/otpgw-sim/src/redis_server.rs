//! A real `redis-server` for tests: started on a free port of 127.0.0.1 with the
//! settings durability needs (`appendonly yes`, `appendfsync always`) in its own
//! directory, killed with SIGKILL and restarted on the same port and data. When
//! `redis-server` is not installed, [`TestRedis::start`] returns `None` (the test is
//! skipped) unless `OTPGW_REQUIRE_REDIS=1`, as `.ci/run` sets.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct TestRedis {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
    /// The primary's port, for a replica.
    replica_of: Option<u16>,
    /// More `redis-server` arguments.
    extra: Vec<String>,
    /// A configuration file given first (the arguments above override it).
    conf: Option<PathBuf>,
}

impl TestRedis {
    /// A durable redis-server on a free port, or `None` when not installed.
    pub fn start(tag: &str) -> Option<Self> {
        Self::start_with(tag, None, &[], None)
    }

    /// A durable replica of `primary` on a free port, or `None` when not installed.
    pub fn start_replica(tag: &str, primary: &TestRedis) -> Option<Self> {
        Self::start_with(tag, Some(primary.port), &[], None)
    }

    /// A durable server (a replica of `replica_of`), from the configuration file
    /// `conf` if given, with more arguments.
    pub fn start_with(
        tag: &str,
        replica_of: Option<u16>,
        extra: &[&str],
        conf: Option<&std::path::Path>,
    ) -> Option<Self> {
        let dir = std::env::temp_dir().join(format!("otpgw-redis-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("free port")
            .local_addr()
            .expect("addr")
            .port();
        let mut r = Self {
            child: None,
            port,
            dir,
            replica_of,
            extra: extra.iter().map(|a| (*a).to_string()).collect(),
            conf: conf.map(std::path::Path::to_path_buf),
        };
        if !r.spawn() {
            if std::env::var("OTPGW_REQUIRE_REDIS").is_ok_and(|v| v == "1") {
                panic!("redis-server is required (OTPGW_REQUIRE_REDIS=1) but could not start");
            }
            eprintln!("redis-server not available: test skipped");
            return None;
        }
        Some(r)
    }

    pub fn spawn(&mut self) -> bool {
        let child = Command::new("redis-server")
            .args(self.conf.iter())
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .args(
                self.replica_of
                    .map(|p| vec!["--replicaof".to_string(), "127.0.0.1".into(), p.to_string()])
                    .unwrap_or_default(),
            )
            .args(&self.extra)
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let Ok(child) = child else { return false };
        self.child = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Send it a signal (`STOP`, `CONT`) while it runs.
    pub fn signal(&self, sig: &str) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill")
                .args([format!("-{sig}"), pid.to_string()])
                .status();
        }
    }

    /// Whether it was started and not killed since.
    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// Its data directory (append-only files).
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.kill9();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
