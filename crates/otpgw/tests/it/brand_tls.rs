//! SMPP over TLS on the brand side: a certificate made with the `openssl` command,
//! a gateway with only a TLS listener, and a real TLS client (rustls) that verifies
//! the certificate, binds, submits and gets its receipt. A plain SMPP bind sent to
//! the TLS port gets no SMPP answer: the connection is closed.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;
use tokio_util::codec::FramedRead;

use otpgw_node::Config;
use otpgw_proto::codec::{Frame, SmppCodec, encode_command};
use otpgw_proto::pdu::{self, BindParams, SubmitFields};
use otpgw_proto::rusmpp::{Command, CommandStatus};
use otpgw_proto::status::{self, cmd};

/// A self-signed certificate for localhost and 127.0.0.1, made by `openssl`.
fn make_cert(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    common::self_signed(dir, "localhost")
}

fn encode(c: &Command) -> BytesMut {
    let mut b = BytesMut::new();
    encode_command(c, &mut b);
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_bind_submit_and_receipt_with_a_real_client() {
    let dir = common::store_dir("tls");
    let (cert, key) = make_cert(&dir);
    let sim = common::sim(|_| {}).await;
    let text = common::config_text("127.0.0.1:0", &[("sim", sim.addr())], "").replace(
        "shutdown_grace_secs = 2\n",
        &format!(
            "shutdown_grace_secs = 2\nplain_listener = false\ntls_listen = \"127.0.0.1:0\"\n\
             tls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
            cert.display(),
            key.display()
        ),
    );
    let gw = common::start(&text).await;
    assert!(gw.wait_bound(2, Duration::from_secs(10)).await);
    let addr = gw.tls_addr().expect("a TLS listener");
    assert_eq!(gw.brand_addr(), addr, "TLS is the only listener");

    // A plain SMPP bind on the TLS port: no bind_resp, the connection just closes.
    let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
    let p = BindParams {
        system_id: "bank".into(),
        password: "pw1".into(),
        system_type: String::new(),
    };
    plain
        .write_all(&encode(&pdu::bind(cmd::BIND_TRANSCEIVER, 1, &p).unwrap()))
        .await
        .unwrap();
    let mut buf = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut buf))
        .await
        .expect("closed in time");
    assert!(
        n.is_err() || !buf.starts_with(&[0, 0, 0]),
        "a plain client must not get an SMPP answer: {buf:?}"
    );

    // A real TLS client that checks the certificate.
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut std::fs::read(&cert).unwrap().as_slice()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = connector
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .expect("TLS handshake");
    let (rd, mut wr) = tokio::io::split(tls);
    let mut rd = FramedRead::new(rd, SmppCodec::default());
    let mut next = async || match tokio::time::timeout(Duration::from_secs(5), rd.next()).await {
        Ok(Some(Ok(Frame::Command(c)))) => *c,
        other => panic!("no PDU: {other:?}"),
    };
    wr.write_all(&encode(&pdu::bind(cmd::BIND_TRANSCEIVER, 1, &p).unwrap()))
        .await
        .unwrap();
    let r = next().await;
    assert_eq!(
        (u32::from(r.id()), u32::from(r.status())),
        (cmd::BIND_TRANSCEIVER_RESP, status::ESME_ROK)
    );
    let f = SubmitFields {
        registered_delivery: 1,
        short_message: Bytes::from_static(b"Your code is 909090"),
        ..otpgw_testkit::sample::fields("BANK", "447400900777")
    };
    wr.write_all(&encode(&Command::new(
        CommandStatus::EsmeRok,
        2,
        f.to_submit_sm().unwrap(),
    )))
    .await
    .unwrap();
    let r = next().await;
    assert_eq!(
        (u32::from(r.id()), u32::from(r.status())),
        (cmd::SUBMIT_SM_RESP, status::ESME_ROK)
    );
    let id = pdu::submit_sm_resp_id(&r).unwrap();
    let d = next().await;
    assert_eq!(u32::from(d.id()), cmd::DELIVER_SM, "the receipt, over TLS");
    wr.write_all(&encode(&pdu::deliver_sm_resp(
        d.sequence_number(),
        status::ESME_ROK,
    )))
    .await
    .unwrap();
    let Some(otpgw_proto::rusmpp::Pdu::DeliverSm(ds)) = d.pdu() else {
        panic!("deliver_sm body")
    };
    let receipt = pdu::DeliverView::from_deliver_sm(ds).receipt().unwrap();
    assert_eq!(receipt.id, id);
    assert_eq!(sim.received(), 1);
    gw.shutdown().await;
    sim.shutdown();
}

#[test]
fn tls_settings_are_checked() {
    let dir = common::store_dir("tls-config");
    let base = common::config_text(
        "127.0.0.1:0",
        &[("sim", "127.0.0.1:9".parse().unwrap())],
        "",
    );
    let with = |extra: &str| {
        base.replace(
            "shutdown_grace_secs = 2\n",
            &format!("shutdown_grace_secs = 2\n{extra}\n"),
        )
    };
    let e = Config::parse(&with("plain_listener = false"), "x")
        .unwrap_err()
        .to_string();
    assert!(e.contains("needs tls_listen"), "{e}");
    let e = Config::parse(&with("tls_listen = \"127.0.0.1:0\""), "x")
        .unwrap_err()
        .to_string();
    assert!(e.contains("go together"), "{e}");
    let missing = format!(
        "tls_listen = \"127.0.0.1:0\"\ntls_cert_file = \"{0}/none.pem\"\ntls_key_file = \"{0}/none.pem\"",
        dir.display()
    );
    let e = Config::parse(&with(&missing), "x").unwrap_err().to_string();
    assert!(e.contains("none.pem"), "{e}");
}

/// The HTTP API over TLS (the same rustls setup): a real HTTPS client that verifies
/// the certificate gets HTTP/2 by ALPN and starts a verification; HTTP/1.1 works
/// on the same port. Connections that never finish their TLS handshake, or finish
/// it and send no request, are closed `header_timeout_secs` after they were
/// accepted, like plain ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_api_over_tls_with_http2() {
    let dir = common::store_dir("http-tls");
    let (cert, key) = make_cert(&dir);
    let sim = common::sim(|_| {}).await;
    let http_port = common::free_port();
    let (brands, sections) = common::http_pieces(http_port);
    let sections = sections.replace(
        "[verify]",
        &format!(
            "tls_cert_file = \"{}\"\ntls_key_file = \"{}\"\nheader_timeout_secs = 1\n[verify]",
            cert.display(),
            key.display()
        ),
    );
    let store = format!("path = \"{}\"", dir.join("otpgw.redb").display());
    let text = common::config_text_full(
        "127.0.0.1:0",
        &[("sim", sim.addr())],
        "",
        &store,
        [&brands[0], &brands[1]],
        &sections,
    );
    let gw = common::start(&text).await;
    assert!(gw.wait_bound(2, Duration::from_secs(10)).await);
    let root = reqwest::Certificate::from_pem(&std::fs::read(&cert).unwrap()).unwrap();
    let base = format!("https://localhost:{http_port}");
    for (h2, want) in [
        (true, reqwest::Version::HTTP_2),
        (false, reqwest::Version::HTTP_11),
    ] {
        let mut b = reqwest::Client::builder()
            .add_root_certificate(root.clone())
            .resolve("localhost", ([127, 0, 0, 1], http_port).into());
        if !h2 {
            b = b.http1_only();
        }
        let client = b.build().unwrap();
        let r = client
            .post(format!("{base}/v1/verifications"))
            .bearer_auth(common::BANK_KEY)
            .json(&serde_json::json!({"to": "+447400900800"}))
            .send()
            .await
            .unwrap();
        assert_eq!((r.status().as_u16(), r.version()), (201, want));
    }
    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{http_port}/v1/openapi.json"))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    // Silent before the handshake, and silent after it: both closed in about a second.
    let closed_within = async |s: &mut (dyn tokio::io::AsyncRead + Unpin + Send)| {
        let mut b = [0u8; 64];
        let t = std::time::Instant::now();
        let r = tokio::time::timeout(Duration::from_secs(4), s.read(&mut b)).await;
        assert!(matches!(r, Ok(Ok(0) | Err(_))), "still open: {r:?}");
        t.elapsed()
    };
    let mut bare = tokio::net::TcpStream::connect(("127.0.0.1", http_port))
        .await
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut std::fs::read(&cert).unwrap().as_slice()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls_client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", http_port))
        .await
        .unwrap();
    let mut quiet = tokio_rustls::TlsConnector::from(Arc::new(tls_client))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .expect("TLS handshake");
    let took = closed_within(&mut quiet).await;
    assert!(took < Duration::from_secs(3), "{took:?}");
    let took = closed_within(&mut bare).await;
    assert!(took < Duration::from_secs(3), "{took:?}");
    gw.shutdown().await;
    sim.shutdown();
}
