//! Micro-benchmark of the scheduler: push and pop with 100,000 messages queued in two
//! classes (`cargo bench -p otpgw-dispatch`).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::sync::Arc;

use otpgw_core::{Class, Message, MsgId};
use otpgw_dispatch::Scheduler;

fn msg(i: u64) -> Arc<Message> {
    Arc::new(Message {
        id: MsgId(i),
        brand: "b".into(),
        to: Default::default(),
        body: Default::default(),
        class: if i.is_multiple_of(10) {
            Class::Otp
        } else {
            Class::Bulk
        },
        accepted_ms: 0,
        deadline_ms: 1_000_000 + (i * 7919) % 100_000,
        attempts: Default::default(),
        extra: None,
        origin: 0,
        progress: Default::default(),
        group: None,
    })
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("scheduler");
    g.throughput(Throughput::Elements(1));
    let mut s = Scheduler::new(usize::MAX);
    for i in 0..100_000 {
        s.push(msg(i));
    }
    let mut next = 100_000u64;
    let mut expired = Vec::new();
    g.bench_function("push+pop at 100k queued", |b| {
        b.iter(|| {
            s.push(msg(next));
            next += 1;
            black_box(s.pop(1, &mut expired))
        })
    });
    g.bench_function("push_at+pop (retry) at 100k queued", |b| {
        b.iter(|| {
            s.push_at(msg(next), 0);
            next += 1;
            black_box(s.pop(1, &mut expired))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
