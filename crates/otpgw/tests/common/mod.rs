//! Helpers shared by the integration tests: a simulator and a gateway on 127.0.0.1
//! with free ports, and the config that joins them.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use otpgw::{Config, Gateway};
use otpgw_sim::{SimConfig, SimHandle};

pub fn config_text(listen: &str, carriers: &[(&str, SocketAddr)], extra_carrier: &str) -> String {
    let mut t = format!(
        r#"
[server]
listen = "{listen}"
[store]
backend = "memory"
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
