//! Micro-benchmark of the embedded store: one group commit (with fsync) of a batch of
//! accepted messages, for batch sizes 1, 100 and 1,000 (`cargo bench -p otpgw-store`).
//! The file lives in the system temporary directory.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::time::Duration;

use otpgw_core::Message;
use otpgw_core::MessageLog;
use otpgw_store::{EmbeddedConfig, EmbeddedStore};

use otpgw_testkit::sample::message as msg;

fn bench(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("otpgw-bench-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut cfg = EmbeddedConfig::new(dir.join("bench.redb"));
    cfg.commit_window = Duration::from_micros(200);
    let store = EmbeddedStore::open(cfg).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut next = 0u64;
    let mut g = c.benchmark_group("store commit");
    g.sample_size(20);
    for batch in [1u64, 100, 1_000] {
        g.throughput(Throughput::Elements(batch));
        g.bench_with_input(BenchmarkId::from_parameter(batch), &batch, |b, &n| {
            b.iter(|| {
                let msgs: Vec<Message> = (0..n).map(|i| msg(next + i)).collect();
                next += n;
                rt.block_on(async {
                    let futs = msgs.iter().map(|m| store.accept(m));
                    for r in futures_util::future::join_all(futs).await {
                        r.unwrap();
                    }
                })
            })
        });
    }
    g.finish();
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
