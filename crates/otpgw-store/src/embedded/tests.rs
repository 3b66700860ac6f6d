use super::*;
use crate::record::SendState;
use crate::writer::Op;
use otpgw_core::{DeliveryState, KeyValue as _, MessageLog as _};

use otpgw_testkit::crash;
use otpgw_testkit::sample::{message as msg, receipt_job as job};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("otpgw-store-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d.join("otpgw.redb")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_accepts_share_commits() {
    let s = Arc::new(EmbeddedStore::open(EmbeddedConfig::new(tmp("group"))).unwrap());
    let mut tasks = Vec::new();
    for i in 0..2000u64 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move { s.accept(&msg(i)).await.is_ok() }));
    }
    for t in tasks {
        assert!(t.await.unwrap());
    }
    let commits = s.stats().commits.load(Ordering::Relaxed);
    assert!(
        commits < 500,
        "{commits} commits for 2000 accepts: no group commit"
    );
    assert_eq!(s.counts().unwrap().0, 2000);
}

#[tokio::test]
async fn recovery_from_a_store_written_by_the_previous_run() {
    let path = tmp("recover");
    {
        let s = EmbeddedStore::open(EmbeddedConfig::new(&path)).unwrap();
        for i in 1..=5 {
            s.accept(&msg(i)).await.unwrap();
        }
        s.submitted(MsgId(2));
        assert!(s.submitted(MsgId(3)).wait().await);
        s.carrier_accepted(MsgId(3), "sim", "1A2B");
        assert!(
            s.finished(MsgId(4), DeliveryState::Delivered, Some(&job(4, 10)), 10)
                .wait()
                .await
        );
        assert!(
            s.finished(MsgId(5), DeliveryState::Delivered, Some(&job(5, 11)), 11)
                .wait()
                .await
        );
        s.receipt_forwarded(MsgId(5));
        assert!(s.flush().wait().await);
        s.close();
    }
    let s = EmbeddedStore::open(EmbeddedConfig::new(&path)).unwrap();
    let r = s.recover(20).unwrap();
    let mut un: Vec<(u64, bool)> = r
        .unconfirmed
        .iter()
        .map(|(m, sent)| (m.id.0, *sent))
        .collect();
    un.sort();
    assert_eq!(un, vec![(1, false), (2, true)]);
    assert_eq!(r.confirmed.len(), 1);
    let (m, carrier, cid) = &r.confirmed[0];
    assert_eq!((m.id.0, carrier.as_str(), cid.as_str()), (3, "sim", "1A2B"));
    assert_eq!(m.body, otpgw_testkit::sample::message(3).body);
    assert_eq!(
        r.receipts.iter().map(|j| j.id.0).collect::<Vec<_>>(),
        vec![4]
    );
}

#[tokio::test]
async fn retention_purges_finished_records_and_old_receipts() {
    let mut cfg = EmbeddedConfig::new(tmp("purge"));
    cfg.finished_retention = Duration::from_millis(1);
    cfg.receipt_retention = Duration::from_millis(1);
    cfg.purge_interval = Duration::from_millis(20);
    let s = EmbeddedStore::open(cfg).unwrap();
    for i in 0..100 {
        s.accept(&msg(i)).await.unwrap();
        s.finished(MsgId(i), DeliveryState::Delivered, Some(&job(i, 1)), 1)
            .wait()
            .await;
    }
    // (purging may already be under way: the records are born past their retention)
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if s.counts().unwrap() == (0, 0, 0) {
            break;
        }
    }
    assert_eq!(s.counts().unwrap(), (0, 0, 0));
    assert!(s.recover(now_ms()).unwrap().receipts.is_empty());
}

#[tokio::test]
async fn busy_when_too_many_accepts_wait() {
    let mut cfg = EmbeddedConfig::new(tmp("busy"));
    cfg.max_pending_accepts = 0;
    let s = EmbeddedStore::open(cfg).unwrap();
    assert!(matches!(s.accept(&msg(1)).await, Err(StoreError::Busy)));
}

/// Child half of the crash test: accept messages as fast as group commit allows and
/// print each id once its acknowledgement resolved. Runs only when the parent test
/// re-executes this binary with OTPGW_STORE_CRASH_CHILD set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_child() {
    let Some(path) = crash::child_arg("OTPGW_STORE_CRASH_CHILD") else {
        return;
    };
    let s = Arc::new(EmbeddedStore::open(EmbeddedConfig::new(path)).unwrap());
    crash::ack_flat_out(s, |_, _| {}).await;
}

/// A commit interrupted by SIGKILL loses nothing that was acknowledged: the parent
/// kills the child at random moments and checks every acknowledged id is on disk.
#[test]
fn sigkill_loses_nothing_acknowledged() {
    if crash::child_arg("OTPGW_STORE_CRASH_CHILD").is_some() {
        return;
    }
    let path = tmp("crash");
    let total_acked = crash::kill_rounds(
        "embedded::tests::crash_child",
        "OTPGW_STORE_CRASH_CHILD",
        &path,
        3,
        |round| 300 + 170 * round,
        |round, acked| {
            let s = EmbeddedStore::open(EmbeddedConfig::new(&path)).unwrap();
            let r = s.recover(now_ms()).unwrap();
            let on_disk: std::collections::HashSet<u64> =
                r.unconfirmed.iter().map(|(m, _)| m.id.0).collect();
            let lost: Vec<_> = acked
                .iter()
                .filter(|id| !on_disk.contains(id))
                .take(5)
                .collect();
            assert!(
                lost.is_empty(),
                "round {round}: acknowledged but lost: {lost:?}"
            );
            s.close();
            let _ = std::fs::remove_file(&path);
        },
    );
    eprintln!("{total_acked} acknowledged accepts survived three SIGKILLs");
    assert!(
        total_acked > 1000,
        "only {total_acked} acks in three rounds"
    );
}

#[tokio::test]
async fn a_batch_skips_writes_a_later_op_of_it_cancels() {
    let path = tmp("coalesce");
    {
        let s = EmbeddedStore::open(EmbeddedConfig::new(&path)).unwrap();
        for i in 1..=4 {
            s.accept(&msg(i)).await.unwrap();
        }
        let codec = Codec::plain();
        let confirmed = |c: &str| {
            codec.state(
                MsgId(1),
                &SendState::Confirmed {
                    carrier: "sim".into(),
                    carrier_id: c.into(),
                },
            )
        };
        let receipt = |i| Some((10, codec.receipt(&job(i, 10))));
        let done = || tokio::sync::oneshot::channel().0;
        let batch = vec![
            // Sent then confirmed: only the confirmation is written.
            Op::Sent(1, done()),
            Op::Confirmed(1, confirmed("C1")),
            // Sent only.
            Op::Sent(2, done()),
            // Finished and forwarded: no receipt left behind.
            Op::Finished {
                id: 3,
                state: DeliveryState::Delivered.tlv(),
                receipt: receipt(3),
                now_ms: 10,
                done: done(),
            },
            Op::Forwarded(3),
            // Finished, its receipt not yet forwarded: kept for the brand.
            Op::Finished {
                id: 4,
                state: DeliveryState::Delivered.tlv(),
                receipt: receipt(4),
                now_ms: 10,
                done: done(),
            },
        ];
        writer::apply(&s.backend.db.get().unwrap(), &codec, &batch).unwrap();
        s.close();
    }
    let s = EmbeddedStore::open(EmbeddedConfig::new(&path)).unwrap();
    let r = s.recover(20).unwrap();
    let un: Vec<(u64, bool)> = r.unconfirmed.iter().map(|(m, s)| (m.id.0, *s)).collect();
    assert_eq!(un, vec![(2, true)]);
    let conf: Vec<(u64, &str)> = r
        .confirmed
        .iter()
        .map(|(m, _, c)| (m.id.0, c.as_str()))
        .collect();
    assert_eq!(conf, vec![(1, "C1")]);
    assert_eq!(
        r.receipts.iter().map(|j| j.id.0).collect::<Vec<_>>(),
        vec![4]
    );
    assert_eq!(s.counts().unwrap().1, 1, "only the receipt of 4 is stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keeps_statuses_keys_and_counts() {
    let path = tmp("http");
    {
        let s = EmbeddedStore::open(EmbeddedConfig::new(&path)).unwrap();
        otpgw_testkit::contract::http_contract(&s).await;
        s.close();
    }
    // Records written by the previous run are there after a restart.
    let s = EmbeddedStore::open(EmbeddedConfig::new(&path)).unwrap();
    let r = s.backend.db.get().unwrap().begin_read().unwrap();
    let kv = r.open_table(KV).unwrap();
    use redb::ReadableTableMetadata;
    assert!(kv.len().unwrap() >= 3, "compare-and-set records survive");
    assert_eq!(r.open_table(STATUS).unwrap().len().unwrap(), 1);
}

#[tokio::test]
async fn expired_keys_and_old_statuses_are_purged() {
    let path = tmp("http-purge");
    let mut cfg = EmbeddedConfig::new(&path);
    cfg.purge_interval = Duration::from_millis(50);
    cfg.finished_retention = Duration::from_millis(1);
    let s = EmbeddedStore::open(cfg).unwrap();
    let now = now_ms();
    assert_eq!(
        s.kv_put("k", 0, b"v".to_vec(), now + 100).await.unwrap(),
        Some(1)
    );
    s.record_status(&otpgw_core::status::MessageStatus {
        id: MsgId(1),
        brand: "bank".into(),
        stage: otpgw_core::status::Stage::Done(DeliveryState::Delivered),
        carrier: None,
        accepted_ms: 1,
        sent_ms: 0,
        done_ms: now,
        deadline_ms: now,
        err: String::new(),
    });
    assert!(s.flush().wait().await);
    tokio::time::sleep(Duration::from_millis(400)).await;
    // A write wakes the writer, which purges on its interval.
    assert!(s.flush().wait().await);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(s.flush().wait().await);
    use redb::ReadableTableMetadata;
    let r = s.backend.db.get().unwrap().begin_read().unwrap();
    assert_eq!(r.open_table(KV).unwrap().len().unwrap(), 0);
    assert_eq!(r.open_table(KV_BY_EXPIRY).unwrap().len().unwrap(), 0);
    assert_eq!(r.open_table(STATUS).unwrap().len().unwrap(), 0);
}

#[tokio::test]
async fn attempts_and_fallback_events_survive_a_restart() {
    let path = tmp("assure");
    {
        let s = EmbeddedStore::open(EmbeddedConfig::new(&path)).unwrap();
        otpgw_testkit::contract::write_assurance(&s, 41).await;
        otpgw_testkit::contract::write_replacement(&s, 42).await;
        s.close();
    }
    let s = EmbeddedStore::open(EmbeddedConfig::new(&path)).unwrap();
    let rec = s.recover(now_ms()).unwrap();
    otpgw_testkit::contract::check_assurance_recovered(&rec, 41);
    otpgw_testkit::contract::check_replacement_recovered(&rec, 42);
}

/// A full disk: accepts fail, and once space is freed they succeed again without a
/// restart (redb refuses every write after an I/O error until the file is opened
/// again, which the writer does); nothing acknowledged is lost. The fault campaign
/// found the store stuck after its disk had been freed.
#[tokio::test]
async fn a_freed_disk_takes_writes_again_without_a_restart() {
    use otpgw_testkit::disk::{SmallDisk, accept_until_refused, assert_recovered};
    let dir = std::env::temp_dir().join(format!("otpgw-store-{}-full", std::process::id()));
    let Some(disk) = SmallDisk::for_test(&dir, 2048) else {
        return;
    };
    let path = disk.dir().join("otpgw.redb");
    let s = EmbeddedStore::open(EmbeddedConfig::new(&path)).unwrap();
    let filler = disk.fill(1024 * 1024);
    let mut acked = accept_until_refused(&s, 1..=200_000u64).await;
    std::fs::remove_file(&filler).unwrap();
    let mut back = None;
    for n in 0..50u64 {
        if s.accept(&msg(1_000_000 + n)).await.is_ok() {
            back = Some(1_000_000 + n);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let back = back.expect("accepts again once space is freed, without a restart");
    acked.push(back);
    assert!(s.is_healthy());
    s.close();
    drop(s);
    assert_recovered(
        &EmbeddedStore::open(EmbeddedConfig::new(&path)).unwrap(),
        &acked,
    );
    eprintln!(
        "{} acknowledged before the disk filled, then accepts again",
        acked.len() - 1
    );
}

/// The "code NNNNNN" texts of sample messages in the file at `path`: (live ones,
/// others), where live ones are those whose id `live` accepts.
fn texts_in_file(path: &std::path::Path, live: impl Fn(u64) -> bool) -> (usize, usize) {
    let bytes = std::fs::read(path).unwrap();
    let (mut kept, mut stale) = (0, 0);
    for w in bytes.windows(11).filter(|w| w.starts_with(b"code ")) {
        let Some(n) = std::str::from_utf8(&w[5..])
            .ok()
            .and_then(|x| x.parse::<u64>().ok())
        else {
            continue;
        };
        if live(n) { kept += 1 } else { stale += 1 }
    }
    (kept, stale)
}

/// Finished texts stay readable in the file's freed pages and in the unused tails
/// of pages changed in place until the scrub overwrites them; it keeps every live
/// message, and repeated scrubs do not grow the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scrub_leaves_no_finished_text_in_the_file() {
    let path = tmp("scrub");
    let finish_some = |s: &EmbeddedStore| {
        for i in (0..3000u64).filter(|i| i % 3 != 0) {
            s.finished(MsgId(i), DeliveryState::Delivered, None, 1);
        }
    };
    {
        let mut cfg = EmbeddedConfig::new(&path);
        cfg.scrub_interval = Duration::from_secs(3600);
        let s = Arc::new(EmbeddedStore::open(cfg).unwrap());
        let mut tasks = Vec::new();
        for i in 0..3000u64 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move { s.accept(&msg(i)).await.is_ok() }));
        }
        for t in tasks {
            assert!(t.await.unwrap());
        }
        finish_some(&s);
        assert!(s.flush().wait().await);
        s.close();
        let (live, stale) = texts_in_file(&path, |n| n % 3 == 0);
        assert!(live >= 1000);
        // What the scrub is for: without it, finished texts are still there.
        assert!(stale > 0, "no finished text left without a scrub");
    }
    let mut cfg = EmbeddedConfig::new(&path);
    cfg.scrub_interval = Duration::ZERO;
    let s = Arc::new(EmbeddedStore::open(cfg).unwrap());
    // Readers keep reading while scrubs run: they wait, never fail.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (s, stop) = (s.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                s.message_status(MsgId(7))
                    .await
                    .expect("a read during a scrub");
                n += 1;
                tokio::task::yield_now().await;
            }
            n
        })
    };
    let mut sizes = Vec::new();
    for round in 0..4u64 {
        // A message finishes (so a scrub is due) and the next batch runs it.
        assert!(
            s.finished(MsgId(round * 3), DeliveryState::Delivered, None, 1)
                .wait()
                .await
        );
        assert!(s.flush().wait().await);
        let (live, stale) = texts_in_file(&path, |n| n % 3 == 0 && n > round * 3);
        assert_eq!(
            (live, stale),
            (999 - round as usize, 0),
            "round {round}: exactly the live texts"
        );
        sizes.push(s.file_size());
    }
    assert!(
        sizes[3] <= sizes[0] + 64 * 1024,
        "the file grows with each scrub: {sizes:?}"
    );
    stop.store(true, Ordering::Relaxed);
    assert!(reader.await.unwrap() > 0);
    assert_eq!(s.counts().unwrap().0, 996);
    s.close();
    drop(s);
    let s = EmbeddedStore::open(EmbeddedConfig::new(&path)).unwrap();
    let r = s.recover(now_ms()).unwrap();
    assert_eq!(
        r.unconfirmed.len(),
        996,
        "every live message survives scrubs"
    );
}
