//! Micro-benchmarks of the SMPP layer: encoding and decoding a `submit_sm`, its
//! response and a receipt `deliver_sm` through the frame-isolating codec, and the
//! receipt text parser. `cargo bench -p otpgw-proto`.

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use tokio_util::codec::Decoder;

use otpgw_proto::codec::{SmppCodec, encode_command};
use otpgw_proto::pdu::{self, Address, ReceiptPdu, SubmitFields, receipt_deliver_sm};
use otpgw_proto::receipt::{self, DeliveryState};
use otpgw_proto::rusmpp::{Command, CommandStatus};

fn submit() -> Command {
    let f = SubmitFields {
        source: Address {
            ton: 5,
            npi: 0,
            addr: "MyBank".into(),
        },
        dest: Address {
            ton: 1,
            npi: 1,
            addr: "447400900123".into(),
        },
        registered_delivery: 1,
        short_message: Bytes::from_static(b"Your code is 482913. Do not share it."),
        ..Default::default()
    };
    Command::new(CommandStatus::EsmeRok, 7, f.to_submit_sm().unwrap())
}

fn receipt_cmd() -> Command {
    let a = Address {
        ton: 1,
        npi: 1,
        addr: "447400900123".into(),
    };
    let b = Address {
        ton: 5,
        npi: 0,
        addr: "MyBank".into(),
    };
    let d = receipt_deliver_sm(&ReceiptPdu {
        source: &a,
        dest: &b,
        message_id: "0000019a2b3c4d5e",
        state: DeliveryState::Delivered,
        submit_date: "2611261200",
        done_date: "2611261200",
        err: "000",
    })
    .unwrap();
    Command::new(CommandStatus::EsmeRok, 9, d)
}

fn bench(c: &mut Criterion) {
    let cases = [
        ("submit_sm", submit()),
        ("submit_sm_resp", pdu::submit_sm_resp(7, "0000019a2b3c4d5e")),
        ("deliver_sm receipt", receipt_cmd()),
    ];
    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Elements(1));
    for (name, cmd) in &cases {
        g.bench_function(format!("encode {name}"), |b| {
            let mut buf = BytesMut::with_capacity(512);
            b.iter(|| {
                buf.clear();
                encode_command(black_box(cmd), &mut buf);
            })
        });
        let mut wire = BytesMut::new();
        encode_command(cmd, &mut wire);
        let wire = wire.freeze();
        g.bench_function(format!("decode {name}"), |b| {
            let mut codec = SmppCodec::default();
            b.iter(|| {
                let mut buf = BytesMut::from(&wire[..]);
                black_box(codec.decode(&mut buf).unwrap())
            })
        });
    }
    g.finish();
    let text = b"id:1234567890 sub:001 dlvrd:001 submit date:2611261200 done date:2611261201 stat:DELIVRD err:000 text:Your code is 4829";
    c.bench_function("receipt text parse", |b| {
        b.iter(|| receipt::parse(black_box(text)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
