//! Helpers shared by the integration tests: a simulator and a gateway on 127.0.0.1
//! with free ports, and the config that joins them.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use otpgw::{Config, Gateway};
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
    config_text_with_store(listen, carriers, extra_carrier, &format!("path = \"{}\"", store.display()))
}

/// Like [`config_text`] with the given `[store]` body.
pub fn config_text_with_store(listen: &str, carriers: &[(&str, SocketAddr)], extra_carrier: &str, store: &str) -> String {
    let mut t = format!(
        r#"
[server]
listen = "{listen}"
shutdown_grace_secs = 2
[store]
{store}
[[brand]]
system_id = "bank"
password = "pw1"
[[brand]]
system_id = "shop"
password = "pw2"
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

pub async fn gateway(sim: &SimHandle, extra_carrier: &str) -> Gateway {
    let text = config_text("127.0.0.1:0", &[("sim", sim.addr())], extra_carrier);
    let cfg = Config::parse(&text, "test").unwrap();
    let gw = Gateway::start(&cfg).await.unwrap();
    assert!(
        gw.wait_bound(2, Duration::from_secs(10)).await,
        "carrier binds did not come up"
    );
    gw
}
