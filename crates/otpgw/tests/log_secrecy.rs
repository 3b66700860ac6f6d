//! No secrets in logs: the real `otpgw serve` at log level `trace` (every crate)
//! carries traffic with known OTP codes, destination numbers and passwords (brand and
//! carrier, right and wrong), receipts whose `text:` echoes the
//! message, and refused submits; none of those strings may appear in anything it
//! wrote.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{GwProc, Raw};
use otpgw_proto::pdu::{self, SubmitFields};
use otpgw_proto::rusmpp::{Command, CommandStatus};
use otpgw_proto::status::{self, cmd};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codes_numbers_and_passwords_never_reach_the_logs() {
    let sim = common::sim(|c| c.receipt_delay = Duration::from_millis(5)).await;
    let dir = common::store_dir("log-secrecy");
    let port = common::free_port();
    let store = format!("path = \"{}\"", dir.join("otpgw.redb").display());
    let cfg = common::config_text_with_store(
        &format!("127.0.0.1:{port}"),
        &[("sim", sim.addr())],
        "",
        &store,
    );
    let mut gw = GwProc::start_with_log(&dir, port, &cfg, "trace").await;

    let mut secrets: Vec<String> = vec![
        "pw1".into(),
        "Zq9Xw7".into(),
        "Pw1Wrong".into(),
        "secret".into(), // the carrier password
    ];
    // Wrong passwords, then the right one.
    for pw in ["Zq9Xw7", "Pw1Wrong"] {
        let mut c = Raw::connect(gw.addr()).await;
        let (_, st, _) = c.bind(cmd::BIND_TRANSCEIVER, "bank", pw, 1).await;
        assert_eq!(st, status::ESME_RBINDFAIL);
    }
    let mut brand = Raw::connect(gw.addr()).await;
    let (_, st, _) = brand.bind(cmd::BIND_TRANSCEIVER, "bank", "pw1", 1).await;
    assert_eq!(st, status::ESME_ROK);

    let (mut sent, mut receipts) = (0, 0);
    for i in 0..30u32 {
        let code = format!("{:06}", 271_828 + i * 7_919);
        let dest = format!("4477009{:05}", 31_337 + i);
        secrets.push(code.clone());
        secrets.push(dest.clone());
        let mut f = SubmitFields {
            registered_delivery: 1,
            priority_flag: 1,
            short_message: Bytes::from(format!("Your login code is {code}. Do not share it.")),
            ..common::submit_fields("BANK", &dest)
        };
        if i % 10 == 9 {
            f.data_coding = 0xF5; // refused: ESME_RINVDCS, with the text and number in it
        }
        let seq = 10 + i;
        brand
            .send(&Command::new(
                CommandStatus::EsmeRok,
                seq,
                f.to_submit_sm().unwrap(),
            ))
            .await;
        loop {
            let c = brand.next_command().await.expect("response");
            if u32::from(c.id()) == cmd::DELIVER_SM {
                receipts += 1;
                brand
                    .send(&pdu::deliver_sm_resp(c.sequence_number(), status::ESME_ROK))
                    .await;
                continue;
            }
            assert_eq!(c.sequence_number(), seq);
            if u32::from(c.status()) == status::ESME_ROK {
                sent += 1;
            }
            break;
        }
    }
    assert_eq!(sent, 27);
    // Receipts (their carrier text echoes the message) come back; answer them.
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    while receipts < sent && tokio::time::Instant::now() < until {
        if let Some(c) = brand.next_command().await
            && u32::from(c.id()) == cmd::DELIVER_SM
        {
            receipts += 1;
            brand
                .send(&pdu::deliver_sm_resp(c.sequence_number(), status::ESME_ROK))
                .await;
        }
    }
    assert_eq!(receipts, sent);
    assert!(sim.records().iter().all(|r| !r.text().is_empty()));
    gw.term(Duration::from_secs(10)).await;

    let logs = gw.logs();
    assert!(
        logs.contains("DEBUG") && logs.contains("submit refused") && logs.contains("bind refused"),
        "debug logging was on and logged the refusals:\n{logs}"
    );
    for s in &secrets {
        assert!(!logs.contains(s.as_str()), "{s:?} appears in the logs");
    }
    sim.shutdown();
}
