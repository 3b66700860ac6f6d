//! Encryption at rest with the real `otpgw serve` on each durable store (embedded,
//! log, Redis): OTPs accepted while the carrier is down and a verification, then
//! `kill -9` with that backlog; no text and no number may be found in the store's
//! files (for Redis: its append-only files, an uncompressed RDB dump and every key
//! and value read back). Then a start without `[store.encryption]`, and one
//! without the key the records need, are refused naming it; `otpgw rekey` moves
//! everything to a new key; a start with only the new key delivers every message
//! intact and the verification's code checks; after that run the files are clean
//! again.

use crate::common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use otpgw_sim::loadgen::{self, LoadConfig, dest_for, text_for};
use otpgw_sim::process::ServeProcess;
use otpgw_sim::redis_server::TestRedis;

const FIRST: u64 = 31_337_000;
const COUNT: u64 = 300;
const VERIFY_TO: &str = "+447400931337";

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_otpgw"))
}

/// Write keys k1 and k2 (64 hex characters each) into `dir`.
fn write_keys(dir: &Path) -> (PathBuf, PathBuf) {
    let (k1, k2) = (dir.join("k1.key"), dir.join("k2.key"));
    std::fs::write(&k1, format!("{}\n", "1f".repeat(32))).unwrap();
    std::fs::write(&k2, format!("{}\n", "2e".repeat(32))).unwrap();
    (k1, k2)
}

/// `[store.encryption]` with `active` and the listed keys.
fn encryption(active: &str, keys: &[(&str, &Path)]) -> String {
    let mut t = format!("[store.encryption]\nactive = \"{active}\"\n");
    for (id, f) in keys {
        t.push_str(&format!(
            "[[store.encryption.keys]]\nid = \"{id}\"\nkey_file = \"{}\"\n",
            f.display()
        ));
    }
    t
}

/// What must never be found at rest: every text and number sent, the verified
/// number (with and without its +).
fn secrets() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = (FIRST..FIRST + COUNT)
        .flat_map(|i| [text_for(i, 0), dest_for(i).into_bytes()])
        .collect();
    v.push(VERIFY_TO.as_bytes().to_vec());
    v.push(VERIFY_TO.as_bytes()[1..].to_vec());
    v
}

/// Every file under `dir` (recursively) whose name passes `keep`.
fn files(dir: &Path, keep: &dyn Fn(&Path) -> bool) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p, keep));
        } else if keep(&p) {
            out.push(p);
        }
    }
    out
}

/// Panics naming the first secret found in `bytes` (from `what`).
fn assert_clean(what: &str, bytes: &[u8], secrets: &[Vec<u8>]) {
    for s in secrets {
        if bytes.windows(s.len()).any(|w| w == s.as_slice()) {
            panic!(
                "{what} holds {:?} in clear ({} bytes searched)",
                String::from_utf8_lossy(s),
                bytes.len()
            );
        }
    }
}

/// Start `otpgw serve` on `config` expecting it to refuse: its log.
async fn refused_start(dir: &Path, name: &str, port: u16, config: &str) -> String {
    let mut p = ServeProcess::new(exe(), dir, name, port, config, "info").unwrap();
    p.spawn().unwrap();
    for _ in 0..500 {
        if !p.running() {
            return p.logs();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{name}: started although it should refuse:\n{}", p.logs());
}

/// `otpgw rekey --config` on `config`: its output.
fn rekey(dir: &Path, config: &str) -> String {
    let f = dir.join("rekey.toml");
    std::fs::write(&f, config).unwrap();
    let out = std::process::Command::new(exe())
        .args(["rekey", "--config"])
        .arg(&f)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "rekey failed: {text}");
    text
}

/// Accept `COUNT` OTPs (the carrier is down: they stay queued) and start a
/// verification.
async fn load(gw: &common::GwProc, http: u16) -> String {
    let mut lc = LoadConfig::new(gw.addr(), "bank", "pw1", COUNT);
    lc.first_index = FIRST;
    lc.registered_delivery = 1;
    lc.receipt_timeout = Duration::from_millis(100);
    let r = loadgen::run(lc).await.unwrap();
    assert_eq!(r.accepted, COUNT, "every OTP acknowledged");
    let (st, body) = verification(http, "", &serde_json::json!({ "to": VERIFY_TO })).await;
    assert_eq!(st, 201, "{body}");
    body["id"].as_str().unwrap().to_string()
}

async fn verification(http: u16, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
    let r = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{http}/v1/verifications{path}"))
        .bearer_auth(common::BANK_KEY)
        .json(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or_default())
}

/// The whole round on one store; `scan` reads what the store holds at rest.
async fn round(tag: &str, store: &str, scan: &dyn Fn() -> Vec<(String, Vec<u8>)>) {
    let dir = common::store_dir(tag);
    let (k1, k2) = write_keys(&dir);
    let port = common::free_port();
    let http = common::free_port();
    let carrier_port = common::free_port();
    let carrier: std::net::SocketAddr = format!("127.0.0.1:{carrier_port}").parse().unwrap();
    let (brands, sections) = common::http_pieces(http);
    let config = |enc: &str| {
        common::config_text_full(
            &format!("127.0.0.1:{port}"),
            &[("sim", carrier)],
            "receipt_ids = \"hex_to_decimal\"",
            &format!("{store}\n{enc}"),
            [&brands[0], &brands[1]],
            &sections,
        )
    };
    let secrets = secrets();
    let check = |when: &str| {
        for (what, bytes) in scan() {
            assert_clean(&format!("{when}: {what}"), &bytes, &secrets);
        }
    };

    // Sealed with k1; the carrier is down: a backlog, then kill -9.
    let mut gw =
        common::GwProc::start(&dir, port, &config(&encryption("k1", &[("k1", &k1)]))).await;
    common::wait_port(http).await;
    let vid = load(&gw, http).await;
    gw.kill9();
    check("after kill -9 with a backlog");

    // Refused without the encryption section, and without key k1.
    let logs = refused_start(&dir, "plain", port, &config("")).await;
    assert!(
        logs.contains("the store is encrypted") && logs.contains("[store.encryption]"),
        "{logs}"
    );
    let logs = refused_start(
        &dir,
        "only-k2",
        port,
        &config(&encryption("k2", &[("k2", &k2)])),
    )
    .await;
    assert!(logs.contains("\"k1\""), "names the key it needs: {logs}");

    // Rotation: k2 active with k1 still readable, rekey, then k1 removed. (Redis:
    // the refused starts' node lease runs out first.)
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let out = rekey(
        &dir,
        &config(&encryption("k2", &[("k1", &k1), ("k2", &k2)])),
    );
    eprintln!("{tag}: {out}");
    check("after rekey");
    let sim = common::sim_at(carrier, |c| c.receipt_delay = Duration::from_millis(5)).await;
    gw.write_config(&config(&encryption("k2", &[("k2", &k2)])));
    gw.restart().await;
    common::wait_port(http).await;
    let mut delivered = std::collections::HashSet::new();
    for _ in 0..500 {
        delivered = sim
            .records()
            .iter()
            .filter(|r| r.text().starts_with(b"code "))
            .map(|r| common::index_of(r.text()))
            .collect();
        if delivered.len() as u64 >= COUNT {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let missing: Vec<u64> = (FIRST..FIRST + COUNT)
        .filter(|i| !delivered.contains(i))
        .collect();
    assert!(missing.is_empty(), "not delivered intact: {missing:?}");
    let code = common::code_sent_to(&sim, &VERIFY_TO[1..], 0).await;
    let (st, body) = verification(
        http,
        &format!("/{vid}/check"),
        &serde_json::json!({ "code": code }),
    )
    .await;
    assert_eq!(
        (st, body["status"].as_str()),
        (200, Some("approved")),
        "{body}"
    );
    // Receipts owed to the brand (not bound) and final statuses are kept now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    gw.kill9();
    check("after the run");
    assert!(
        !gw.logs().contains("cannot be read"),
        "every record read:\n{}",
        gw.logs()
    );
    sim.shutdown();
}

/// Every file under `dir` but the processes' logs, configurations and keys (the
/// log store's segments are `seg-N.log`).
fn store_files(dir: PathBuf) -> impl Fn() -> Vec<(String, Vec<u8>)> {
    move || {
        let found = files(&dir, &|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            name.starts_with("seg-")
                || !p
                    .extension()
                    .is_some_and(|e| e == "log" || e == "toml" || e == "key")
        });
        assert!(!found.is_empty(), "no store file under {}", dir.display());
        found
            .into_iter()
            .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_keeps_nothing_in_clear_and_rotates_keys() {
    let dir = common::store_dir("at-rest-embedded");
    let db = dir.join("otpgw.redb");
    round(
        "at-rest-embedded",
        &format!("path = \"{}\"", db.display()),
        &store_files(dir),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_store_keeps_nothing_in_clear_and_rotates_keys() {
    let dir = common::store_dir("at-rest-log");
    let segs = dir.join("segments");
    round(
        "at-rest-log",
        &format!("backend = \"log\"\npath = \"{}\"", segs.display()),
        &store_files(segs),
    )
    .await;
}

/// Every key and value under the prefix, read back with the commands of its type.
fn redis_contents(port: u16) -> Vec<u8> {
    let cli = |args: &[&str]| {
        let out = std::process::Command::new("redis-cli")
            .args(["-p", &port.to_string(), "--no-raw"])
            .args(args)
            .output()
            .unwrap();
        out.stdout
    };
    let mut all = Vec::new();
    let keys = String::from_utf8(cli(&["--scan", "--pattern", "t:*"])).unwrap();
    for k in keys.lines().map(|l| l.trim_matches('"')) {
        all.extend_from_slice(k.as_bytes());
        let ty = String::from_utf8(cli(&["TYPE", k])).unwrap();
        let v = match ty.trim() {
            "string" => cli(&["GET", k]),
            "hash" => cli(&["HGETALL", k]),
            "stream" => cli(&["XRANGE", k, "-", "+"]),
            "zset" => cli(&["ZRANGE", k, "0", "-1", "WITHSCORES"]),
            "set" => cli(&["SMEMBERS", k]),
            "list" => cli(&["LRANGE", k, "0", "-1"]),
            _ => Vec::new(),
        };
        all.extend_from_slice(&v);
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_keeps_nothing_in_clear_and_rotates_keys() {
    let Some(redis) = TestRedis::start("at-rest") else {
        return;
    };
    let store = format!(
        "backend = \"redis\"\nredis_url = \"{}\"\nnode_id = \"node-a\"\nredis_prefix = \"t\"\nnode_lease_ms = 600",
        redis.url()
    );
    let (port, rdir) = (redis.port, redis.dir().to_path_buf());
    let scan = move || {
        // An RDB snapshot without compression (so a text would show), the
        // append-only files, and every key and value read back.
        let dump = rdir.join("check.rdb");
        let _ = std::process::Command::new("redis-cli")
            .args([
                "-p",
                &port.to_string(),
                "CONFIG",
                "SET",
                "rdbcompression",
                "no",
            ])
            .output();
        let ok = std::process::Command::new("redis-cli")
            .args(["-p", &port.to_string(), "--rdb"])
            .arg(&dump)
            .output()
            .unwrap();
        assert!(ok.status.success(), "redis-cli --rdb failed");
        let mut out = vec![("an RDB dump".to_string(), std::fs::read(&dump).unwrap())];
        for f in files(&rdir, &|p| p.to_string_lossy().contains("appendonly")) {
            out.push((f.display().to_string(), std::fs::read(&f).unwrap()));
        }
        out.push(("its keys and values".into(), redis_contents(port)));
        out
    };
    round("at-rest-redis", &store, &scan).await;
}
