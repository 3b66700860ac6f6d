//! TLS towards carriers: otpgw binds over mutual TLS to the simulated carrier
//! (`otpgw sim --tls-cert --tls-key --tls-client-ca` in-process) and through
//! HAProxy (OpenSSL, not our code) terminating TLS in front of a plain simulator;
//! a carrier certificate otpgw does not trust fails the bind (counted, nothing
//! sent in clear). Certificates are made by the `openssl` command.

use crate::common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use otpgw_sim::loadgen::{self, LoadConfig};

fn cert(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    common::self_signed(dir, name)
}

/// The carrier settings for TLS to a server whose certificate is `ca`.
fn tls_settings(ca: &Path, client: Option<(&Path, &Path)>) -> String {
    let mut s = format!(
        "tls = true\ntls_ca_file = \"{}\"\ntls_server_name = \"localhost\"\n",
        ca.display()
    );
    if let Some((c, k)) = client {
        s += &format!(
            "tls_client_cert_file = \"{}\"\ntls_client_key_file = \"{}\"\n",
            c.display(),
            k.display()
        );
    }
    s
}

/// 50 OTPs through the gateway, each with its receipt.
async fn send_50(gw: &otpgw_node::Gateway) {
    let mut lc = LoadConfig::new(gw.brand_addr(), "bank", "pw1", 50);
    lc.receipt_timeout = Duration::from_secs(5);
    let r = loadgen::run(lc).await.unwrap();
    assert_eq!((r.accepted, r.receipts), (50, 50));
}

async fn handshake_failures(gw: &otpgw_node::Gateway) -> f64 {
    crate::ops::scrape_sum(
        gw.ops_addr().unwrap(),
        "otpgw_carrier_tls_handshake_failures_total",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binds_over_mutual_tls_and_refuses_an_untrusted_carrier() {
    let dir = common::store_dir("carrier-tls");
    let (server, server_key) = cert(&dir, "carrier");
    let (client, client_key) = cert(&dir, "otpgw");
    let (stranger, _) = cert(&dir, "stranger");
    let tls =
        otpgw_accept::tls::server_config_with_clients(&server, &server_key, Some(&client)).unwrap();
    let sim = common::sim(|c| c.tls = Some(tls.clone())).await;

    // Mutual TLS: otpgw checks the carrier's certificate, the carrier otpgw's.
    let gw = common::gateway(&sim, &tls_settings(&server, Some((&client, &client_key)))).await;
    send_50(&gw).await;
    assert_eq!(handshake_failures(&gw).await, 0.0);
    // The client certificate (made for 2 days) expires in 2 days: the alert's
    // signal.
    let left = crate::ops::scrape_value(
        gw.ops_addr().unwrap(),
        "otpgw_tls_cert_expiry_seconds{use=\"carrier_client\"}",
    )
    .await
    .expect("the expiry gauge");
    assert!(
        (2.0 * 86_400.0 - 600.0..=2.0 * 86_400.0 + 60.0).contains(&left),
        "{left}"
    );
    gw.shutdown().await;

    // A carrier certificate otpgw does not trust: no bind, counted, nothing sent.
    let text = common::config_text(
        "127.0.0.1:0",
        &[("sim", sim.addr())],
        &tls_settings(&stranger, Some((&client, &client_key))),
    );
    let gw = common::start(&text).await;
    assert!(!gw.wait_bound(1, Duration::from_millis(1500)).await);
    assert!(handshake_failures(&gw).await >= 1.0);
    assert_eq!(sim.binds(), 0);
    gw.shutdown().await;
    assert_eq!(sim.received(), 50, "nothing more reached the carrier");
    sim.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binds_over_tls_terminated_by_haproxy() {
    let dir = common::store_dir("carrier-tls-haproxy");
    let (server, server_key) = cert(&dir, "carrier");
    let combined = dir.join("combined.pem");
    std::fs::write(
        &combined,
        [
            std::fs::read(&server).unwrap(),
            std::fs::read(&server_key).unwrap(),
        ]
        .concat(),
    )
    .unwrap();
    let sim = common::sim(|_| {}).await;
    let port = common::free_port();
    let cfg = format!(
        "global\n  maxconn 100\ndefaults\n  mode tcp\n  timeout connect 2s\n  timeout client 30s\n  timeout server 30s\n\
         frontend tls\n  bind 127.0.0.1:{port} ssl crt {}\n  default_backend sim\n\
         backend sim\n  server sim {}\n",
        combined.display(),
        sim.addr()
    );
    let Some(_haproxy) = common::haproxy(&dir, &cfg) else {
        return;
    };
    common::wait_port(port).await;
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let text = common::config_text(
        "127.0.0.1:0",
        &[("sim", addr)],
        &tls_settings(&server, None),
    );
    let gw = common::start(&text).await;
    assert!(
        gw.wait_bound(1, Duration::from_secs(10)).await,
        "bound through HAProxy's TLS"
    );
    send_50(&gw).await;
    assert_eq!(handshake_failures(&gw).await, 0.0);
    gw.shutdown().await;
    sim.shutdown();
}
