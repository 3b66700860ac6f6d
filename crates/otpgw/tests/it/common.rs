//! Helpers shared by the integration tests: a simulator and a gateway on 127.0.0.1
//! with free ports, and the config that joins them.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::codec::FramedRead;

use otpgw_node::{Config, Gateway};
use otpgw_proto::codec::{Frame, SmppCodec, encode_command};
use otpgw_proto::pdu::{self, BindParams};
use otpgw_proto::rusmpp::Command;
use otpgw_sim::process::ServeProcess;
use otpgw_sim::{SimConfig, SimHandle};

/// A fresh directory for one test's store.
pub fn store_dir(tag: &str) -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let d = std::env::temp_dir().join(format!(
        "otpgw-test-{}-{tag}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A config with two brands (bank/pw1, shop/pw2), the given carriers, and the
/// embedded store in a fresh directory.
pub fn config_text(listen: &str, carriers: &[(&str, SocketAddr)], extra_carrier: &str) -> String {
    let store = store_dir("store").join("otpgw.redb");
    config_text_with_store(
        listen,
        carriers,
        extra_carrier,
        &format!("path = \"{}\"", store.display()),
    )
}

/// Like [`config_text`] with the given `[store]` body.
pub fn config_text_with_store(
    listen: &str,
    carriers: &[(&str, SocketAddr)],
    extra_carrier: &str,
    store: &str,
) -> String {
    config_text_full(listen, carriers, extra_carrier, store, ["", ""], "")
}

/// The HTTP API keys and webhook secrets of the test brands.
pub const BANK_KEY: &str = "bank-http-key-for-tests-0123456789";
pub const SHOP_KEY: &str = "shop-http-key-for-tests-0123456789";
pub const BANK_HOOK_SECRET: &str = "bank-webhook-secret-0123";

/// `[http]` on `http_port`, `[verify]` with a fixed secret, API keys and webhook
/// secrets for bank and shop: the pieces [`config_text_full`] takes.
/// The `[http]` line that lets webhooks reach the tests' receivers on loopback
/// (internal addresses are refused otherwise: `otpgw_http::url_policy`).
pub const ALLOW_LOOPBACK_HOOKS: &str = "webhook_allow_networks = [\"127.0.0.0/8\"]";

pub fn http_pieces(http_port: u16) -> ([String; 2], String) {
    let brands = [
        format!(
            "api_key_hash = \"{}\"\nwebhook_secret = \"{BANK_HOOK_SECRET}\"\n",
            otpgw_http::auth::sha256_hash(BANK_KEY)
        ),
        format!(
            "api_key_hash = \"{}\"\n",
            otpgw_http::auth::sha256_hash(SHOP_KEY)
        ),
    ];
    let sections = format!(
        "[http]\nlisten = \"127.0.0.1:{http_port}\"\n{ALLOW_LOOPBACK_HOOKS}\n[verify]\nsecret = \"test-verify-secret-0123456789abcdef0123\"\nsender = \"BANK\"\n"
    );
    (brands, sections)
}

/// The full test config: `brand_extra` lines go into bank's and shop's tables,
/// `sections` after `[store]`.
pub fn config_text_full(
    listen: &str,
    carriers: &[(&str, SocketAddr)],
    extra_carrier: &str,
    store: &str,
    brand_extra: [&str; 2],
    sections: &str,
) -> String {
    let [bank_extra, shop_extra] = brand_extra;
    let mut t = format!(
        r#"
[server]
listen = "{listen}"
shutdown_grace_secs = 2
[ops]
listen = "127.0.0.1:0"
[store]
{store}
{sections}
[[brand]]
system_id = "bank"
password_hash = "$argon2id$v=19$m=19456,t=2,p=1$ZsxRHVrDzMPWgzbh8LlRVA$oq2uNdpAD6ds4B/9end6jzCP4LegVA8dSS1bA5Dwyj0" # pw1
{bank_extra}
[[brand]]
system_id = "shop"
password_hash = "$argon2id$v=19$m=19456,t=2,p=1$YlYZDJtddaEsiNJX4yYNgA$EJuT18m+e8JijaJM6Q9JCh1sYCOrwkGtrCxWWqnU2PU" # pw2
{shop_extra}
"#
    );
    for (name, addr) in carriers {
        t.push_str(&format!(
            r#"
[[carrier]]
name = "{name}"
address = "{addr}"
system_id = "otpgw"
password = "secret"
binds = 2
window = 200
reconnect_min_ms = 50
reconnect_max_ms = 500
retry_delay_ms = 50
{extra_carrier}
"#
        ));
    }
    let names: Vec<String> = carriers.iter().map(|(n, _)| format!("\"{n}\"")).collect();
    t.push_str(&format!("\n[routes]\ndefault = [{}]\n", names.join(", ")));
    t
}

pub async fn sim(cfg: impl FnOnce(&mut SimConfig)) -> SimHandle {
    let mut c = SimConfig::new("127.0.0.1:0".parse().unwrap());
    c.credentials = Some(("otpgw".into(), "secret".into()));
    cfg(&mut c);
    SimHandle::start(c).await.unwrap()
}

/// A simulated carrier listening on `addr` (credentials otpgw/secret).
pub async fn sim_at(addr: SocketAddr, cfg: impl FnOnce(&mut SimConfig)) -> SimHandle {
    let mut c = SimConfig::new(addr);
    c.credentials = Some(("otpgw".into(), "secret".into()));
    cfg(&mut c);
    SimHandle::start(c).await.unwrap()
}

/// The gateway under test, in this process: started on the configuration `text`.
pub async fn start(text: &str) -> Gateway {
    match Config::parse(text, "test") {
        Ok(cfg) => Gateway::start(&cfg).await.unwrap(),
        Err(e) => panic!("{e}"),
    }
}

/// [`start`] on [`config_text`] in front of `sim`, with its carrier binds up.
pub async fn gateway(sim: &SimHandle, extra_carrier: &str) -> Gateway {
    let text = config_text("127.0.0.1:0", &[("sim", sim.addr())], extra_carrier);
    let gw = start(&text).await;
    assert!(
        gw.wait_bound(2, Duration::from_secs(10)).await,
        "carrier binds did not come up"
    );
    gw
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    otpgw_sim::process::free_port().unwrap()
}

/// `otpgw serve` of this build as a child process (the harness the fault campaign
/// uses too), panicking where a test cannot go on.
pub struct GwProc(pub ServeProcess);

impl std::ops::Deref for GwProc {
    type Target = ServeProcess;
    fn deref(&self) -> &ServeProcess {
        &self.0
    }
}

impl std::ops::DerefMut for GwProc {
    fn deref_mut(&mut self) -> &mut ServeProcess {
        &mut self.0
    }
}

impl GwProc {
    /// Write `config` to `dir` and start `otpgw serve` on it; waits for the brand port.
    pub async fn start(dir: &std::path::Path, port: u16, config: &str) -> Self {
        Self::start_with_log(dir, port, config, "info").await
    }

    /// Like [`GwProc::start`] with `RUST_LOG` set to `rust_log`.
    pub async fn start_with_log(
        dir: &std::path::Path,
        port: u16,
        config: &str,
        rust_log: &str,
    ) -> Self {
        let exe = std::path::Path::new(env!("CARGO_BIN_EXE_otpgw"));
        match ServeProcess::start(exe, dir, port, config, rust_log).await {
            Ok(p) => GwProc(p),
            Err(e) => panic!("{e}"),
        }
    }

    /// Start it again (after a kill); waits for the brand port.
    pub async fn restart(&mut self) {
        if let Err(e) = self.0.spawn() {
            panic!("{e}");
        }
        if let Err(e) = self.0.wait_listening(Duration::from_secs(5)).await {
            panic!("{e}");
        }
    }

    /// Replace the config file (for a reload).
    pub fn write_config(&self, text: &str) {
        self.0.write_config(text).unwrap();
    }
}

/// Index of a message from the text the load generator gave it ("code NNNNNNNNNN...").
pub fn index_of(text: &[u8]) -> u64 {
    std::str::from_utf8(&text[5..15]).unwrap().parse().unwrap()
}

/// `otpgw serve` on a free port with the embedded store in a fresh directory,
/// in front of `sim`.
pub async fn serve_process(sim: &SimHandle, tag: &str) -> GwProc {
    let dir = store_dir(tag);
    let port = free_port();
    let store = format!("path = \"{}\"", dir.join("otpgw.redb").display());
    let cfg = config_text_with_store(
        &format!("127.0.0.1:{port}"),
        &[("sim", sim.addr())],
        "",
        &store,
    );
    GwProc::start(&dir, port, &cfg).await
}

/// A raw SMPP client for brand-side tests: send any bytes, read PDUs one by one.
pub struct Raw {
    pub rd: FramedRead<tokio::net::tcp::OwnedReadHalf, SmppCodec>,
    pub wr: tokio::net::tcp::OwnedWriteHalf,
}

impl Raw {
    pub async fn connect(addr: std::net::SocketAddr) -> Self {
        Self::from_stream(TcpStream::connect(addr).await.unwrap())
    }
    /// Connect from another loopback address (127.0.0.2 and so on: every address
    /// of 127/8 is this machine), as a second client machine would.
    pub async fn connect_from(addr: std::net::SocketAddr, local: &str) -> Self {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(format!("{local}:0").parse().unwrap()).unwrap();
        Self::from_stream(sock.connect(addr).await.unwrap())
    }
    fn from_stream(s: TcpStream) -> Self {
        let (r, w) = s.into_split();
        Raw {
            rd: FramedRead::new(r, SmppCodec::default()),
            wr: w,
        }
    }
    pub async fn send(&mut self, c: &Command) {
        let mut b = BytesMut::new();
        encode_command(c, &mut b);
        self.wr.write_all(&b).await.unwrap();
    }
    pub async fn send_raw(&mut self, b: &[u8]) {
        self.wr.write_all(b).await.unwrap();
    }
    /// Next PDU, whole (`None` on timeout, close or a malformed frame).
    pub async fn next_command(&mut self) -> Option<Command> {
        match tokio::time::timeout(Duration::from_secs(5), self.rd.next())
            .await
            .ok()??
        {
            Ok(Frame::Command(c)) => Some(*c),
            _ => None,
        }
    }
    /// Next PDU as (command_id, status, sequence).
    pub async fn next(&mut self) -> Option<(u32, u32, u32)> {
        match tokio::time::timeout(Duration::from_secs(5), self.rd.next())
            .await
            .ok()??
        {
            Ok(Frame::Command(c)) => Some((
                u32::from(c.id()),
                u32::from(c.status()),
                c.sequence_number(),
            )),
            _ => None,
        }
    }
    pub async fn bind(&mut self, id: u32, user: &str, pw: &str, seq: u32) -> (u32, u32, u32) {
        let p = BindParams {
            system_id: user.into(),
            password: pw.into(),
            system_type: String::new(),
        };
        self.send(&pdu::bind(id, seq, &p).unwrap()).await;
        self.next().await.unwrap()
    }
}

/// A plain HTTP/1.0 GET: (status code, body); (0, "") when nothing answered.
#[allow(dead_code)]
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::AsyncReadExt;
    let Ok(mut s) = TcpStream::connect(addr).await else {
        return (0, String::new());
    };
    let req = format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return (0, String::new());
    }
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

/// `otpgw serve` with the HTTP API (and verifications) on a free port, the
/// embedded store in a fresh directory, in front of `sim`. Returns the process and
/// the API's base URL.
pub async fn serve_http_process(sim: &SimHandle, tag: &str, extra_http: &str) -> (GwProc, String) {
    let dir = store_dir(tag);
    let port = free_port();
    let http_port = free_port();
    let store = format!("path = \"{}\"", dir.join("otpgw.redb").display());
    let (brands, sections) = http_pieces(http_port);
    let sections = sections.replacen("[verify]", &format!("{extra_http}\n[verify]"), 1);
    let cfg = config_text_full(
        &format!("127.0.0.1:{port}"),
        &[("sim", sim.addr())],
        "",
        &store,
        [&brands[0], &brands[1]],
        &sections,
    );
    let gw = GwProc::start(&dir, port, &cfg).await;
    wait_port(http_port).await;
    (gw, format!("http://127.0.0.1:{http_port}"))
}

/// Wait until something listens on `port` of 127.0.0.1.
pub async fn wait_port(port: u16) {
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("nothing listens on {port}");
}

/// The text the simulated carrier got for the last message to `number` (digits),
/// decoded from GSM or UCS-2.
pub fn last_text_to(sim: &SimHandle, number: &str) -> Option<String> {
    sim.records()
        .into_iter()
        .filter(|r| r.fields.dest.addr == number)
        .last()
        .map(|r| r.shown_text())
}

/// The one-time code (the first run of 4 or more digits) in the last message the
/// carrier got for `number`, waiting up to 5 s for it.
pub async fn code_sent_to(sim: &SimHandle, number: &str, after: usize) -> String {
    for _ in 0..250 {
        let n = sim
            .records()
            .iter()
            .filter(|r| r.fields.dest.addr == number)
            .count();
        if n > after
            && let Some(t) = last_text_to(sim, number)
            && let Some(c) = t
                .split(|c: char| !c.is_ascii_digit())
                .find(|w| w.len() >= 4)
        {
            return c.to_string();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no code reached the carrier for {number}");
}

/// A webhook receiver on 127.0.0.1: records every post (signature header, body)
/// and answers with the status it is set to (200 at first).
#[derive(Clone)]
pub struct HookSink {
    pub url: String,
    pub got: std::sync::Arc<parking_lot::Mutex<Vec<(String, String)>>>,
    pub status: std::sync::Arc<std::sync::atomic::AtomicU16>,
}

impl HookSink {
    pub async fn start() -> Self {
        use std::sync::atomic::Ordering;
        let got: std::sync::Arc<parking_lot::Mutex<Vec<(String, String)>>> = Default::default();
        let status = std::sync::Arc::new(std::sync::atomic::AtomicU16::new(200));
        let (g, s) = (got.clone(), status.clone());
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |h: axum::http::HeaderMap, body: String| {
                let (g, s) = (g.clone(), s.clone());
                async move {
                    let sig = h
                        .get("otpgw-signature")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    g.lock().push((sig, body));
                    axum::http::StatusCode::from_u16(s.load(Ordering::Relaxed))
                        .unwrap_or(axum::http::StatusCode::OK)
                }
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", l.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(l, app).await;
        });
        Self { url, got, status }
    }

    /// Bodies received so far for message `id`, and whether each was correctly
    /// signed with `secret`.
    pub fn for_id(&self, id: &str, secret: &str) -> Vec<(bool, serde_json::Value)> {
        let now = otpgw_core::clock::now_ms() / 1000;
        self.got
            .lock()
            .iter()
            .filter_map(|(sig, body)| {
                let v: serde_json::Value = serde_json::from_str(body).ok()?;
                (v["id"] == id).then(|| {
                    (
                        otpgw_http::webhook::verify(
                            secret.as_bytes(),
                            sig,
                            body.as_bytes(),
                            now,
                            300,
                        ),
                        v,
                    )
                })
            })
            .collect()
    }
}

/// A self-signed certificate for localhost and 127.0.0.1 (CN `name`), made by the
/// `openssl` command: (certificate, key) PEM files in `dir`.
pub fn self_signed(dir: &std::path::Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let (c, k) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    let ok = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-days", "2", "-nodes", "-subj", &format!("/CN={name}")])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&k)
        .arg("-out")
        .arg(&c)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl runs")
        .success();
    assert!(ok, "openssl made {name}");
    (c, k)
}

/// A process killed when dropped.
pub struct Killed(pub std::process::Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// HAProxy run with the configuration `cfg` (written to `dir`), or `None` (the
/// test says it is skipped) when it is not installed; with OTPGW_REQUIRE_HAPROXY
/// set that is a failure.
pub fn haproxy(dir: &std::path::Path, cfg: &str) -> Option<Killed> {
    if std::process::Command::new("haproxy")
        .arg("-v")
        .output()
        .is_err()
    {
        assert!(
            std::env::var_os("OTPGW_REQUIRE_HAPROXY").is_none(),
            "haproxy is required (scripts/test.sh installs it)"
        );
        eprintln!("SKIPPED: haproxy not installed; run scripts/test.sh");
        return None;
    }
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, cfg).unwrap();
    Some(Killed(
        std::process::Command::new("haproxy")
            .arg("-f")
            .arg(&path)
            .arg("-db")
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    ))
}
