//! Per-brand limits over real sockets: sender ids, destination prefixes, messages per
//! destination number (SMS pumping defence) and messages per second, each with its
//! SMPP status, while another brand keeps its full throughput.

use crate::common;

use std::time::Duration;

use bytes::Bytes;
use common::Raw;
use otpgw_proto::pdu::SubmitFields;
use otpgw_proto::rusmpp::{Command, CommandStatus};
use otpgw_proto::status::{self, cmd};
use otpgw_sim::loadgen::{self, LoadConfig};

async fn submit(c: &mut Raw, seq: u32, source: &str, dest: &str) -> u32 {
    let f = SubmitFields {
        short_message: Bytes::from_static(b"Your code is 424242"),
        ..otpgw_testkit::sample::fields(source, dest)
    };
    c.send(&Command::new(
        CommandStatus::EsmeRok,
        seq,
        f.to_submit_sm().unwrap(),
    ))
    .await;
    loop {
        let r = c.next_command().await.expect("response");
        if u32::from(r.id()) == cmd::SUBMIT_SM_RESP {
            assert_eq!(r.sequence_number(), seq);
            return u32::from(r.status());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brand_limits_answer_with_their_status() {
    let sim = common::sim(|_| {}).await;
    let text = common::config_text("127.0.0.1:0", &[("sim", sim.addr())], "").replace(
        "system_id = \"bank\"\n",
        "system_id = \"bank\"\nmax_rate = 200\nallowed_sources = [\"OTPGW\", \"BANK\"]\n\
         allowed_prefixes = [\"4474\"]\nmax_per_destination = 3\n",
    );
    let gw = common::start(&text).await;
    assert!(gw.wait_bound(2, Duration::from_secs(10)).await);

    let mut c = Raw::connect(gw.brand_addr()).await;
    assert_eq!(
        c.bind(cmd::BIND_TRANSCEIVER, "bank", "pw1", 1).await.1,
        status::ESME_ROK
    );
    assert_eq!(
        submit(&mut c, 2, "EVIL", "447400900001").await,
        status::ESME_RINVSRCADR
    );
    assert_eq!(
        submit(&mut c, 3, "BANK", "4915112345678").await,
        status::ESME_RINVDSTADR
    );
    for seq in 4..7 {
        assert_eq!(
            submit(&mut c, seq, "BANK", "447400900999").await,
            status::ESME_ROK
        );
    }
    assert_eq!(
        submit(&mut c, 7, "BANK", "+447400900999").await,
        status::ESME_RSUBMITFAIL,
        "fourth message to one number within the window"
    );
    assert_eq!(
        submit(&mut c, 8, "BANK", "447400900998").await,
        status::ESME_ROK
    );
    drop(c);

    // Flat out, bank gets its rate and ESME_RTHROTTLED beyond; shop, unlimited,
    // runs at the same time and gets everything through.
    let mut shop = LoadConfig::new(gw.brand_addr(), "shop", "pw2", 4_000);
    shop.registered_delivery = 0;
    let shop = tokio::spawn(loadgen::run(shop));
    let mut bank = LoadConfig::new(gw.brand_addr(), "bank", "pw1", 2_000);
    bank.registered_delivery = 0;
    let bank = loadgen::run(bank).await.unwrap();
    let elapsed = bank.submit_elapsed.as_secs_f64();
    let allowed = 200.0 + 200.0 * elapsed + 5.0;
    assert!(
        (bank.accepted as f64) <= allowed && bank.accepted >= 150,
        "bank accepted {} in {elapsed:.2} s at 200/s",
        bank.accepted
    );
    assert_eq!(
        bank.rejected
            .get(&status::ESME_RTHROTTLED)
            .copied()
            .unwrap_or(0),
        2_000 - bank.accepted,
        "{:?}",
        bank.rejected
    );
    let shop = shop.await.unwrap().unwrap();
    assert_eq!(shop.accepted, 4_000, "{:?}", shop.rejected);
    gw.shutdown().await;
    sim.shutdown();
}
