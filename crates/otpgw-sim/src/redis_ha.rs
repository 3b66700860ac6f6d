//! A real Redis high-availability set for tests and `otpgw failover`: one primary
//! and its replicas (durable [`TestRedis`] servers started from the shipped
//! `deploy/redis-ha/redis.conf`: `min-replicas-to-write 1`, so a primary cut from
//! its replicas refuses writes) and three Redis Sentinels (the shipped
//! `sentinel.conf`; Debian's `redis-sentinel`, else `redis-server --sentinel`), all
//! on free ports of 127.0.0.1, with short failure detection
//! (`down-after-milliseconds`).
//!
//! Members can be killed (SIGKILL), stopped (SIGSTOP) and continued, and started
//! again on their port and data; [`TestHa::primary`] asks the Sentinels which
//! member is primary now.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::redis_server::TestRedis;

/// The name the Sentinels monitor the primary under.
pub const MASTER: &str = "otpgw";

/// The shipped settings of every Redis server of a set (deploy/redis-ha).
const REDIS_CONF: &str = include_str!("../../../deploy/redis-ha/redis.conf");
/// The shipped Sentinel settings; the test set changes the addresses and times.
const SENTINEL_CONF: &str = include_str!("../../../deploy/redis-ha/sentinel.conf");

/// The set (see the module docs).
pub struct TestHa {
    /// Index 0 starts as the primary; the others as its replicas.
    pub servers: Vec<TestRedis>,
    sentinels: Vec<(Child, u16)>,
    dir: PathBuf,
}

impl TestHa {
    /// A primary, `replicas` replicas and three Sentinels that call a member down
    /// after `down_after`; `None` when Redis is not installed (see
    /// [`TestRedis::start`]).
    pub fn start(tag: &str, replicas: usize, down_after: Duration) -> Option<Self> {
        let dir =
            std::env::temp_dir().join(format!("otpgw-sentinels-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).ok()?;
        let conf = dir.join("redis.conf");
        std::fs::write(&conf, REDIS_CONF).ok()?;
        let primary = TestRedis::start_with(&format!("{tag}-p"), None, &[], Some(&conf))?;
        let mut servers = vec![primary];
        for i in 0..replicas {
            let port = servers[0].port;
            servers.push(TestRedis::start_with(
                &format!("{tag}-r{i}"),
                Some(port),
                &[],
                Some(&conf),
            )?);
        }
        let mut ha = Self {
            servers,
            sentinels: Vec::new(),
            dir,
        };
        ha.wait_replicas(Duration::from_secs(20));
        for i in 0..3 {
            let port = crate::process::free_port().ok()?;
            let conf = ha.dir.join(format!("sentinel-{i}.conf"));
            let text = SENTINEL_CONF
                .replace(
                    "port 26379",
                    &format!("port {port}\nbind 127.0.0.1\ndir {}", ha.dir.display()),
                )
                .replace("redis-1 6379", &format!("127.0.0.1 {}", ha.servers[0].port))
                .replace(
                    "down-after-milliseconds otpgw 5000",
                    &format!("down-after-milliseconds otpgw {}", down_after.as_millis()),
                )
                .replace(
                    "failover-timeout otpgw 30000",
                    "failover-timeout otpgw 5000",
                );
            std::fs::write(&conf, text).ok()?;
            let child = sentinel_command(&conf)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .ok()?;
            ha.sentinels.push((child, port));
        }
        for (_, port) in &ha.sentinels {
            let t = Instant::now();
            while TcpStream::connect(("127.0.0.1", *port)).is_err() {
                if t.elapsed() > Duration::from_secs(5) {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Some(ha)
    }

    /// The Sentinels' addresses (`host:port`), for `redis_sentinels`.
    pub fn sentinel_addrs(&self) -> Vec<String> {
        self.sentinels
            .iter()
            .map(|(_, p)| format!("127.0.0.1:{p}"))
            .collect()
    }

    /// The index of the member a Sentinel that answers names as primary.
    pub fn primary(&self) -> Option<usize> {
        for (_, port) in &self.sentinels {
            let reply = command(*port, &["SENTINEL", "get-master-addr-by-name", MASTER]);
            if let Some(p) = reply.get(1).and_then(|p| p.parse::<u16>().ok()) {
                return self.servers.iter().position(|s| s.port == p);
            }
        }
        None
    }

    /// Wait until the Sentinels name a primary other than `old` and it has a
    /// replica in sync; the new primary's index.
    pub fn wait_failover(&self, old: usize, within: Duration) -> Option<usize> {
        let t = Instant::now();
        while t.elapsed() < within {
            if let Some(p) = self.primary()
                && p != old
                && role(self.servers[p].port).as_deref() == Some("master")
            {
                return Some(p);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Wait until every replica that runs is in sync with the primary that the
    /// Sentinels name (or, before they know of one, member 0).
    pub fn wait_replicas(&self, within: Duration) -> bool {
        let t = Instant::now();
        while t.elapsed() < within {
            // Asked each time: the Sentinels agree on a new primary one by one.
            let primary = self.primary().unwrap_or(0);
            let synced = self
                .servers
                .iter()
                .enumerate()
                .filter(|(i, s)| *i != primary && s.running())
                .all(|(_, s)| info(s.port, "replication").contains("master_link_status:up"));
            if synced {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Each member's port, role and replication link, for a failure message.
    pub fn describe(&self) -> String {
        let field = |info: &str, k: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(k))
                .map(|v| v.trim().to_string())
                .unwrap_or_else(|| "-".into())
        };
        let mut out = format!("sentinels name {:?};", self.primary());
        for (i, s) in self.servers.iter().enumerate() {
            let info = info(s.port, "replication");
            out.push_str(&format!(
                " member {i} (port {}, {}): role {}, master_port {}, link {}, sync in progress {};",
                s.port,
                if s.running() { "running" } else { "down" },
                field(&info, "role:"),
                field(&info, "master_port:"),
                field(&info, "master_link_status:"),
                field(&info, "master_sync_in_progress:")
            ));
        }
        out
    }

    /// Stop (SIGSTOP) or continue (SIGCONT) member `i`.
    pub fn signal(&self, i: usize, sig: &str) {
        self.servers[i].signal(sig);
    }
}

impl Drop for TestHa {
    fn drop(&mut self) {
        for (c, _) in &mut self.sentinels {
            let _ = c.kill();
            let _ = c.wait();
        }
        for i in 0..self.servers.len() {
            self.signal(i, "CONT");
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `redis-sentinel CONF`, or `redis-server CONF --sentinel` where the former is not
/// installed (the same program).
fn sentinel_command(conf: &std::path::Path) -> Command {
    let has_sentinel = Command::new("redis-sentinel")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if has_sentinel {
        let mut c = Command::new("redis-sentinel");
        c.arg(conf);
        c
    } else {
        let mut c = Command::new("redis-server");
        c.arg(conf).arg("--sentinel");
        c
    }
}

/// One command over RESP; the reply's bulk strings (a flat array or one value),
/// empty when the server does not answer within a second.
pub fn command(port: u16, args: &[&str]) -> Vec<String> {
    let Ok(mut s) = TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(1),
    ) else {
        return Vec::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    if s.write_all(req.as_bytes()).is_err() {
        return Vec::new();
    }
    let mut r = BufReader::new(s);
    let mut line = String::new();
    if r.read_line(&mut line).is_err() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let bulk = |r: &mut BufReader<TcpStream>, head: &str| -> Option<String> {
        let n: i64 = head.trim_end().strip_prefix('$')?.parse().ok()?;
        if n < 0 {
            return None;
        }
        let mut buf = vec![0u8; usize::try_from(n).ok()? + 2];
        std::io::Read::read_exact(r, &mut buf).ok()?;
        buf.truncate(buf.len() - 2);
        String::from_utf8(buf).ok()
    };
    match line.as_bytes().first() {
        Some(b'*') => {
            let n: usize = line.trim_end()[1..].parse().unwrap_or(0);
            for _ in 0..n {
                let mut h = String::new();
                if r.read_line(&mut h).is_err() {
                    break;
                }
                match h.as_bytes().first() {
                    Some(b'$') => out.extend(bulk(&mut r, &h)),
                    Some(b':' | b'+') => out.push(h.trim_end()[1..].to_string()),
                    _ => out.push(String::new()),
                }
            }
        }
        Some(b'$') => out.extend(bulk(&mut r, &line)),
        Some(b'+' | b':' | b'-') => out.push(line.trim_end()[1..].to_string()),
        _ => {}
    }
    out
}

/// `INFO section` of the server on `port` (empty when it does not answer).
pub fn info(port: u16, section: &str) -> String {
    command(port, &["INFO", section]).concat()
}

/// The server's own idea of its role (`master`, `slave`), from `ROLE`.
pub fn role(port: u16) -> Option<String> {
    command(port, &["ROLE"]).into_iter().next()
}
