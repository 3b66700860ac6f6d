//! SIGHUP reloads brands, routes and carrier windows into the running binary without
//! dropping sessions, and keeps the old configuration when the new file is invalid.

use crate::common;

use std::time::Duration;

use otpgw_sim::loadgen::{self, LoadConfig, LoadError};

async fn can_bind(addr: std::net::SocketAddr, user: &str, pw: &str) -> bool {
    let mut lc = LoadConfig::new(addr, user, pw, 1);
    lc.receipt_timeout = Duration::from_secs(2);
    match loadgen::run(lc).await {
        Ok(r) => r.accepted == 1,
        Err(LoadError::BindRefused(_)) => false,
        Err(e) => panic!("{e}"),
    }
}

async fn wait_log(gw: &common::GwProc, needle: &str) {
    for _ in 0..100 {
        if gw.logs().contains(needle) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("log never said {needle:?}:\n{}", gw.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_a_valid_file_and_keeps_the_old_one_when_invalid() {
    let sim = common::sim(|c| c.receipt_delay = Duration::from_millis(2)).await;
    let dir = common::store_dir("reload");
    let port = common::free_port();
    let store = format!("path = \"{}\"", dir.join("otpgw.redb").display());
    let base = common::config_text_with_store(
        &format!("127.0.0.1:{port}"),
        &[("sim", sim.addr())],
        "",
        &store,
    );
    let mut gw = common::GwProc::start(&dir, port, &base).await;
    assert!(!can_bind(gw.addr(), "newbrand", "pw3").await);

    // A session that stays bound and busy across the reload.
    let mut lc = LoadConfig::new(gw.addr(), "bank", "pw1", 3_000);
    lc.rate = Some(1_000);
    lc.receipt_timeout = Duration::from_secs(5);
    let load = tokio::spawn(loadgen::run(lc));
    tokio::time::sleep(Duration::from_millis(800)).await;

    // Valid: a new brand, and a smaller window.
    let valid = base.replace("window = 200", "window = 50")
        + "\n[[brand]]\nsystem_id = \"newbrand\"\npassword_hash = \"$argon2id$v=19$m=19456,t=2,p=1$RY+7lXgCRZMOcPxXhRy0tQ$BzwV5qwh7DwPs6fp4HxaiUk/Y9bCZnGRLFIhJRf60cM\"\n";
    gw.write_config(&valid);
    gw.signal("HUP");
    wait_log(&gw, "configuration reloaded").await;
    assert!(
        can_bind(gw.addr(), "newbrand", "pw3").await,
        "new brand after reload"
    );
    let r = load.await.unwrap().unwrap();
    assert_eq!(
        (r.accepted, r.receipts),
        (3_000, 3_000),
        "the bound session was not disturbed"
    );

    // Invalid: a route naming a carrier that does not exist; the old config stays.
    let invalid = valid.replace("default = [\"sim\"]", "default = [\"ghost\"]")
        + "\n[[brand]]\nsystem_id = \"other\"\npassword_hash = \"$argon2id$v=19$m=19456,t=2,p=1$oBu7+Fr6yO3rdWfKoEEcyg$RiHKBNmbfuLmMmf+h60MZp+PYfK+JpwICWsq9x7a+xc\"\n";
    gw.write_config(&invalid);
    gw.signal("HUP");
    wait_log(&gw, "new configuration invalid; old configuration kept").await;
    assert!(
        gw.logs().contains("unknown carrier"),
        "the reason is logged"
    );
    assert!(!can_bind(gw.addr(), "other", "pw4").await);
    assert!(can_bind(gw.addr(), "newbrand", "pw3").await);
    assert!(can_bind(gw.addr(), "bank", "pw1").await);
    assert_eq!(gw.term(Duration::from_secs(10)).await, Some(0));
    sim.shutdown();
}
