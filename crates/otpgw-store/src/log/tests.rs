use super::*;
use otpgw_core::{DeliveryState, KeyValue as _, MessageLog as _};
use std::collections::{BTreeSet, HashSet};

use otpgw_testkit::contract as fixtures;
use otpgw_testkit::crash;
use otpgw_testkit::disk::{SmallDisk, accept_until_refused, assert_recovered};
use otpgw_testkit::sample::{message as msg, receipt_job as job};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("otpgw-log-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn open(dir: &Path) -> LogStore {
    LogStore::open(LogConfig::new(dir)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_keys_counts_and_concurrent_accepts() {
    let dir = tmp("contract");
    let s = Arc::new(open(&dir));
    otpgw_testkit::contract::http_contract(&*s).await;
    let mut tasks = Vec::new();
    for i in 0..2000u64 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.accept(&msg(10_000 + i)).await.is_ok()
        }));
    }
    for t in tasks {
        assert!(t.await.unwrap());
    }
    let commits = s.stats().commits.load(Ordering::Relaxed);
    assert!(
        commits < 500,
        "{commits} commits for 2000 accepts: no group commit"
    );
}

#[tokio::test]
async fn recovery_from_the_previous_run() {
    let dir = tmp("recover");
    {
        let s = open(&dir);
        for i in 1..=5 {
            s.accept(&msg(i)).await.unwrap();
        }
        s.submitted(MsgId(2));
        assert!(s.submitted(MsgId(3)).wait().await);
        s.carrier_accepted(MsgId(3), "sim", "1A2B");
        let t = now_ms();
        assert!(
            s.finished(MsgId(4), DeliveryState::Delivered, Some(&job(4, t)), t)
                .wait()
                .await
        );
        assert!(
            s.finished(MsgId(5), DeliveryState::Delivered, Some(&job(5, t)), t)
                .wait()
                .await
        );
        s.receipt_forwarded(MsgId(5));
        otpgw_testkit::contract::write_assurance(&s, 41).await;
        otpgw_testkit::contract::write_replacement(&s, 42).await;
        assert!(s.flush().wait().await);
        s.close();
    }
    let s = open(&dir);
    let r = s.recover(20).unwrap();
    let un: Vec<(u64, bool)> = r
        .unconfirmed
        .iter()
        .map(|(m, sent)| (m.id.0, *sent))
        .filter(|(id, _)| *id != 42)
        .collect();
    assert_eq!(un, vec![(1, false), (2, true)]);
    let (m, carrier, cid) = &r.confirmed[0];
    assert_eq!((m.id.0, carrier.as_str(), cid.as_str()), (3, "sim", "1A2B"));
    assert_eq!(m.body, otpgw_testkit::sample::message(3).body);
    let owed: BTreeSet<u64> = r.receipts.iter().map(|j| j.message_id().0).collect();
    assert_eq!(owed, [4, 41].into_iter().collect());
    otpgw_testkit::contract::check_assurance_recovered(&r, 41);
    otpgw_testkit::contract::check_replacement_recovered(&r, 42);
    assert!(
        s.recover(20).unwrap().unconfirmed.is_empty(),
        "handed over once"
    );
}

/// Messages come and finish; segments are compacted (the live ones written again)
/// so the log stays small, and what is live survives compaction and a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_keeps_the_live_and_drops_the_rest() {
    let dir = tmp("compact");
    let mut cfg = LogConfig::new(&dir);
    cfg.segment_bytes = 32 << 10;
    cfg.commit_window = Duration::from_micros(50);
    let later = now_ms() + 3_600_000;
    {
        let s = LogStore::open(cfg.clone()).unwrap();
        // Long-lived: unfinished messages, a receipt owed, a key, a status.
        for i in 1..=20 {
            s.accept(&msg(i)).await.unwrap();
        }
        s.carrier_accepted(MsgId(7), "sim", "77");
        assert!(
            s.finished(
                MsgId(20),
                DeliveryState::Delivered,
                Some(&job(20, now_ms())),
                now_ms()
            )
            .wait()
            .await
        );
        assert_eq!(
            s.kv_put("ver:k", 0, b"v1".to_vec(), later).await.unwrap(),
            Some(1)
        );
        // Churn: 3,000 messages accepted and finished.
        for i in 1_000..4_000u64 {
            s.accept(&msg(i)).await.unwrap();
            assert!(
                s.finished(MsgId(i), DeliveryState::Delivered, None, now_ms())
                    .wait()
                    .await
            );
        }
        assert_eq!(
            s.kv_put("ver:k", 1, b"v2".to_vec(), later).await.unwrap(),
            Some(2)
        );
        assert!(s.flush().wait().await);
        // A write after the last batch gives the writer a turn to compact.
        for _ in 0..10 {
            assert!(s.flush().wait().await);
        }
        let segs = s.segment_count();
        let bytes = s.disk_bytes();
        assert!(segs <= cfg.max_segments, "{segs} segments");
        assert!(
            bytes < 400 << 10,
            "{bytes} bytes on disk for 20 live messages"
        );
        assert!(s.stats().commits.load(Ordering::Relaxed) > 0);
        s.close();
    }
    let s = LogStore::open(cfg).unwrap();
    let r = s.recover(now_ms()).unwrap();
    let live: BTreeSet<u64> = r
        .unconfirmed
        .iter()
        .map(|(m, _)| m.id.0)
        .chain(r.confirmed.iter().map(|(m, _, _)| m.id.0))
        .collect();
    assert_eq!(live, (1..=19).collect());
    assert_eq!(r.confirmed.len(), 1);
    assert_eq!(r.receipts.len(), 1);
    let k = s.kv_get("ver:k").await.unwrap().unwrap();
    assert_eq!((k.version, k.value.as_slice()), (2, &b"v2"[..]));
}

/// What a prefix of the log must recover to, computed without the store: live
/// messages, receipts owed, key versions.
#[derive(Debug, Default, PartialEq)]
struct Model {
    live: BTreeSet<u64>,
    owed: BTreeSet<u64>,
    keys: Vec<(String, u64)>,
}

fn model_of(records: &[Rec<'_>]) -> Model {
    let mut m = Model::default();
    let mut keys: HashMap<String, u64> = HashMap::new();
    for r in records {
        match r {
            Rec::Accept { id, .. } => {
                m.live.insert(*id);
            }
            Rec::AcceptOnce { id, key, .. } => {
                m.live.insert(*id);
                keys.entry(key.clone()).or_insert(1);
            }
            Rec::Finished { id, receipt, .. } => {
                m.live.remove(id);
                if receipt.is_some() {
                    m.owed.insert(*id);
                }
            }
            Rec::Forwarded { id } => {
                m.owed.remove(id);
            }
            Rec::Owe { id, .. } => {
                m.owed.insert(*id);
            }
            Rec::Kv { key, version, .. } => {
                keys.insert(key.clone(), *version);
            }
            Rec::State { .. } | Rec::Status { .. } => {}
        }
    }
    m.keys = keys.into_iter().collect();
    m.keys.sort();
    m
}

fn recovered_model(s: &LogStore) -> Model {
    let r = s.recover(now_ms()).unwrap();
    let idx = s.backend.index.read();
    let mut keys: Vec<(String, u64)> = idx.kv.iter().map(|(k, e)| (k.clone(), e.version)).collect();
    keys.sort();
    Model {
        live: r
            .unconfirmed
            .iter()
            .map(|(m, _)| m.id.0)
            .chain(r.confirmed.iter().map(|(m, _, _)| m.id.0))
            .collect(),
        owed: r.receipts.iter().map(|j| j.id.0).collect(),
        keys,
    }
}

/// The log cut at every byte of its last segment (a write torn anywhere) recovers
/// exactly the records whole before the cut, and cuts the rest off.
#[tokio::test]
async fn a_log_cut_at_every_byte_recovers_its_whole_records() {
    let dir = tmp("torn");
    let later = now_ms() + 3_600_000;
    {
        let s = open(&dir);
        for i in 1..=6 {
            s.accept(&msg(i)).await.unwrap();
        }
        s.submitted(MsgId(1));
        s.carrier_accepted(MsgId(2), "sim", "2");
        s.finished(
            MsgId(3),
            DeliveryState::Delivered,
            Some(&job(3, later)),
            later,
        );
        s.finished(MsgId(4), DeliveryState::Undeliverable, None, 9);
        s.receipt_forwarded(MsgId(3));
        s.finished(
            MsgId(5),
            DeliveryState::Delivered,
            Some(&job(5, later)),
            later,
        );
        s.kv_put("a", 0, b"x".to_vec(), later).await.unwrap();
        s.kv_put("a", 1, b"y".to_vec(), later).await.unwrap();
        s.accept_once(&msg(7), "idem:k", b"v".to_vec(), later)
            .await
            .unwrap();
        assert!(s.flush().wait().await);
        s.close();
    }
    let segs = segments(&dir).unwrap();
    assert_eq!(segs.len(), 1);
    let full = std::fs::read(seg_path(&dir, segs[0])).unwrap();
    let (found, valid) = frame::scan(&full);
    assert_eq!(valid, full.len());
    let records: Vec<Rec<'_>> = found
        .iter()
        .map(|f| frame::decode(f.body).unwrap())
        .collect();
    let ends: Vec<usize> = found.iter().map(|f| f.offset + f.len).collect();
    let cut_dir = tmp("torn-cut");
    // Every byte in release; every 7th in debug builds (the same code, less time).
    let step = if cfg!(debug_assertions) { 7 } else { 1 };
    let mut cuts = (0..=full.len()).step_by(step).collect::<Vec<_>>();
    cuts.push(full.len() - 1);
    for cut in cuts {
        let _ = std::fs::remove_dir_all(&cut_dir);
        std::fs::create_dir_all(&cut_dir).unwrap();
        std::fs::write(seg_path(&cut_dir, segs[0]), &full[..cut]).unwrap();
        let s = open(&cut_dir);
        let whole = ends.iter().filter(|e| **e <= cut).count();
        assert_eq!(
            recovered_model(&s),
            model_of(&records[..whole]),
            "cut at {cut}"
        );
        s.close();
        let kept = std::fs::metadata(seg_path(&cut_dir, segs[0]))
            .unwrap()
            .len() as usize;
        assert_eq!(
            kept,
            if whole == 0 { 0 } else { ends[whole - 1] },
            "cut at {cut}"
        );
    }
}

#[tokio::test]
async fn a_damaged_record_before_the_last_segment_refuses_to_open() {
    let dir = tmp("damaged");
    let mut cfg = LogConfig::new(&dir);
    cfg.segment_bytes = 512;
    {
        let s = LogStore::open(cfg.clone()).unwrap();
        for i in 1..=20 {
            s.accept(&msg(i)).await.unwrap();
        }
        s.close();
    }
    let segs = segments(&dir).unwrap();
    assert!(segs.len() > 2);
    let p = seg_path(&dir, segs[0]);
    let mut b = std::fs::read(&p).unwrap();
    b[20] ^= 0xFF;
    std::fs::write(&p, b).unwrap();
    assert!(matches!(LogStore::open(cfg), Err(StoreError::Corrupt(_))));
}

/// Child half of the crash test (see the embedded store's): accept flat out and
/// print each id once acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_child() {
    let Some(path) = crash::child_arg("OTPGW_LOG_CRASH_CHILD") else {
        return;
    };
    let mut cfg = LogConfig::new(path);
    cfg.segment_bytes = 4 << 20;
    let s = Arc::new(LogStore::open(cfg).unwrap());
    // Every other message finishes: segments fill and compact.
    crash::ack_flat_out(s, |s, id| {
        if id % 2 == 0 {
            s.finished(MsgId(id), DeliveryState::Delivered, None, 1);
        }
    })
    .await;
}

/// SIGKILL at random moments under load (with segments rolling and compacting):
/// every acknowledged message that was not finished is there after the restart.
#[test]
fn sigkill_loses_nothing_acknowledged() {
    if crash::child_arg("OTPGW_LOG_CRASH_CHILD").is_some() {
        return;
    }
    let dir = tmp("crash");
    let total = crash::kill_rounds(
        "log::tests::crash_child",
        "OTPGW_LOG_CRASH_CHILD",
        &dir,
        3,
        |round| 400 + 230 * round,
        |round, acked| {
            let s = open(&dir);
            let r = s.recover(now_ms()).unwrap();
            let there: HashSet<u64> = r.unconfirmed.iter().map(|(m, _)| m.id.0).collect();
            // Odd ids were never finished: each acknowledged one must be there.
            let lost: Vec<_> = acked
                .iter()
                .filter(|id| *id % 2 == 1 && !there.contains(id))
                .take(5)
                .collect();
            assert!(
                lost.is_empty(),
                "round {round}: acknowledged but lost: {lost:?}"
            );
            s.close();
            let _ = std::fs::remove_dir_all(&dir);
        },
    );
    eprintln!("{total} acknowledged accepts survived three SIGKILLs");
    assert!(total > 1000, "only {total} acks");
}

/// A full disk: accepts fail (brands get a temporary error) and the store says it
/// is unhealthy; once space is freed they succeed again; nothing acknowledged is
/// lost.
#[tokio::test]
async fn a_full_disk_refuses_accepts_and_loses_nothing_acknowledged() {
    let Some(disk) = SmallDisk::for_test(&tmp("full"), 256) else {
        return;
    };
    let dir = disk.dir().join("log");
    let filler = disk.dir().join("filler");
    std::fs::write(&filler, vec![0u8; 128 << 10]).unwrap();
    let s = open(&dir);
    let mut acked = accept_until_refused(&s, 1..=5_000u64).await;
    std::fs::remove_file(&filler).unwrap();
    let next = 10_000;
    s.accept(&msg(next))
        .await
        .expect("accepts again once space is freed");
    acked.push(next);
    assert!(s.is_healthy());
    s.close();
    assert_recovered(&open(&dir), &acked);
    eprintln!(
        "{} acknowledged before the disk filled; 3 refused",
        acked.len() - 1
    );
}

/// Writes nobody waits for (a carrier's confirmation, a receipt forwarded, a
/// finish whose commit failed) made while the disk is full are not forgotten: they
/// land once space is freed, so the next run neither sends those messages again
/// nor repeats those receipts. (The soak campaign found the gap: after a disk-full
/// episode and then a SIGKILL, brands got receipts twice.)
#[tokio::test]
async fn writes_made_while_the_disk_is_full_land_once_it_is_freed() {
    let Some(disk) = SmallDisk::for_test(&tmp("backlog"), 256) else {
        return;
    };
    let dir = disk.dir().join("log");
    let s = open(&dir);
    fixtures::write_before_outage(&s).await;
    // Fill the disk until a write fails.
    let filler = disk.fill(0);
    // Whatever room the last pages had goes to accepts, until one is refused.
    let mut refused = false;
    for i in 1_000..6_000u64 {
        if s.accept(&msg(i)).await.is_err() {
            refused = true;
            break;
        }
    }
    assert!(refused, "the disk is full");
    fixtures::write_during_outage(&s).await;
    assert!(!s.is_healthy());
    std::fs::remove_file(&filler).unwrap();
    // No new write needed: the writer tries its backlog again by itself.
    let mut landed = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if s.is_healthy() {
            landed = true;
            break;
        }
    }
    assert!(landed, "healthy again once space is freed");
    assert!(s.flush().wait().await);
    s.close();
    let s = open(&dir);
    fixtures::check_outage_writes_landed(&s.recover(now_ms()).unwrap());
    s.close();
}
