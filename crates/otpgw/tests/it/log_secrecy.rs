//! No secrets in logs: the real `otpgw serve` at log level `trace` (every crate)
//! carries traffic with known OTP codes, destination numbers and passwords (brand and
//! carrier, right and wrong), receipts whose `text:` echoes the
//! message, and refused submits; then over the HTTP API verifications (the codes
//! generated, right and wrong checks), messages with codes in their text, API keys
//! right and wrong, signed webhooks; none of those strings may appear in anything
//! it wrote.

use crate::common;

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
    let http_port = common::free_port();
    let (brands, sections) = common::http_pieces(http_port);
    let cfg = common::config_text_full(
        &format!("127.0.0.1:{port}"),
        &[("sim", sim.addr())],
        // The simulator's ids are short and sequential: with only 27 receipts the
        // matcher could not learn the convention (it never guesses), so say it.
        "receipt_ids = \"hex_to_decimal\"",
        &store,
        [&brands[0], &brands[1]],
        &sections,
    );
    let mut gw = GwProc::start_with_log(&dir, port, &cfg, "trace").await;
    common::wait_port(http_port).await;

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
        let dest = format!("4474009{:05}", 31_337 + i);
        secrets.push(code.clone());
        secrets.push(dest.clone());
        let mut f = SubmitFields {
            registered_delivery: 1,
            priority_flag: 1,
            short_message: Bytes::from(format!("Your login code is {code}. Do not share it.")),
            ..otpgw_testkit::sample::fields("BANK", &dest)
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

    // The HTTP API: keys, verification codes (right and wrong), texts, numbers.
    let hooks = common::HookSink::start().await;
    let base = format!("http://127.0.0.1:{http_port}");
    let http = reqwest::Client::new();
    secrets.extend([
        common::BANK_KEY.to_string(),
        common::SHOP_KEY.to_string(),
        common::BANK_HOOK_SECRET.to_string(),
        "test-verify-secret-0123456789abcdef0123".to_string(),
        "WrongKey4242x".to_string(),
    ]);
    let post = |key: &str, path: &str, body: serde_json::Value| {
        http.post(format!("{base}{path}"))
            .bearer_auth(key)
            .json(&body)
            .send()
    };
    let r = post(
        "WrongKey4242x",
        "/v1/messages",
        serde_json::json!({"to": "+447400931999"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 401);
    for i in 0..4u32 {
        let dest = format!("4474009{:05}", 41_337 + i);
        secrets.push(dest.clone());
        let r = post(
            common::BANK_KEY,
            "/v1/verifications",
            serde_json::json!({"to": format!("+{dest}")}),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 201);
        let v: serde_json::Value = r.json().await.unwrap();
        let id = v["id"].as_str().unwrap().to_string();
        let code = common::code_sent_to(&sim, &dest, 0).await;
        let wrong = format!("{:06}", (code.parse::<u32>().unwrap() + 1) % 1_000_000);
        secrets.push(code.clone());
        secrets.push(wrong.clone());
        for c in [&wrong, &code] {
            let r = post(
                common::BANK_KEY,
                &format!("/v1/verifications/{id}/check"),
                serde_json::json!({"code": c}),
            )
            .await
            .unwrap();
            assert_eq!(r.status(), 200);
        }
        let text = format!("Ihr Code lautet {:07}", 5_551_212 + i);
        secrets.push(format!("{:07}", 5_551_212 + i));
        let dest2 = format!("4474009{:05}", 51_337 + i);
        secrets.push(dest2.clone());
        let r = post(
            common::BANK_KEY,
            "/v1/messages",
            serde_json::json!({"to": format!("+{dest2}"), "from": "BANK", "text": text, "receipt_url": hooks.url}),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 202);
    }
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    while hooks.got.lock().len() < 4 && tokio::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(hooks.got.lock().len(), 4, "the webhooks came");
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
