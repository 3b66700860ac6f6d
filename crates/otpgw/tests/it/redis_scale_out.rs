//! Several `otpgw serve` nodes on one Redis (`backend = "redis"`, same prefix,
//! their own node ids) in front of one simulated carrier.

use crate::common;

use std::collections::HashSet;
use std::time::Duration;

use common::index_of;
use otpgw_sim::loadgen::{self, LoadConfig};
use otpgw_sim::redis_server::TestRedis;

/// Where Redis is, as the `[store]` line says it (`redis_url = ...` here; the
/// cluster tests give `redis_cluster = [...]`).
pub(crate) fn url_of(redis: &TestRedis) -> String {
    format!("redis_url = \"{}\"", redis.url())
}

fn node_config(at: &str, node: &str, port: u16, sim: std::net::SocketAddr, extra: &str) -> String {
    let store = format!("backend = \"redis\"\n{at}\nnode_id = \"{node}\"\nredis_prefix = \"gw\"");
    // The simulator answers with hex ids and reports them in decimal.
    let extra = format!("receipt_ids = \"hex_to_decimal\"\n{extra}");
    common::config_text_with_store(
        &format!("127.0.0.1:{port}"),
        &[("sim", sim)],
        &extra,
        &store,
    )
}

/// A carrier rate cap of 300/s holds for three nodes together: the simulator never
/// sees more than 300 in any second (plus the 20 ms burst of 6 and 4 % for the time
/// between a grant and the submit reaching the simulator),
/// while each node alone would send 300/s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn carrier_rate_cap_holds_across_three_nodes() {
    let Some(redis) = TestRedis::start("cap") else {
        return;
    };
    let sim = common::sim(|_| {}).await;
    let mut nodes = Vec::new();
    for n in ["a", "b", "c"] {
        let dir = common::store_dir(&format!("scale-cap-{n}"));
        let port = common::free_port();
        let cfg = node_config(&url_of(&redis), n, port, sim.addr(), "rate_limit = 300");
        nodes.push(common::GwProc::start(&dir, port, &cfg).await);
    }
    let per_node = 600u64;
    let mut loads = Vec::new();
    for (k, gw) in nodes.iter().enumerate() {
        let mut lc = LoadConfig::new(gw.addr(), "bank", "pw1", per_node);
        lc.first_index = k as u64 * per_node;
        lc.registered_delivery = 0;
        lc.window = 100;
        loads.push(tokio::spawn(loadgen::run(lc)));
    }
    let mut acked = HashSet::new();
    for l in loads {
        let r = tokio::time::timeout(Duration::from_secs(30), l)
            .await
            .expect("load ends")
            .expect("task")
            .expect("load ran");
        assert_eq!(r.accepted, per_node, "refused: {:?}", r.rejected);
        acked.extend(r.ids.values().cloned());
    }
    assert_eq!(
        acked.len() as u64,
        3 * per_node,
        "message ids unique across nodes"
    );
    // Wait until the carrier has them all (1,800 at 300/s: about 6 s).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while sim.records().len() < 1800 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut recs = sim.records();
    assert_eq!(recs.len(), 1800, "all messages reached the carrier");
    let distinct: HashSet<u64> = recs.iter().map(|r| index_of(r.text())).collect();
    assert_eq!(distinct.len(), 1800, "each exactly once");
    recs.sort_by_key(|r| r.at);
    let mut worst = 0;
    for (i, r) in recs.iter().enumerate() {
        let n = recs[i..]
            .iter()
            .take_while(|x| x.at < r.at + Duration::from_secs(1))
            .count();
        worst = worst.max(n);
    }
    let span = recs[recs.len() - 1].at - recs[0].at;
    eprintln!("most in one second: {worst}; 1,800 took {span:?}");
    assert!(
        worst <= 318,
        "{worst} submits in one second with a shared cap of 300/s"
    );
    assert!(
        span >= Duration::from_secs(5),
        "1,800 at 300/s took only {span:?}"
    );
    for gw in &mut nodes {
        assert_eq!(
            gw.term(Duration::from_secs(10)).await,
            Some(0),
            "{}",
            gw.logs()
        );
    }
}

/// Every receipt a brand saw, by otpgw message id, from any node.
fn receipts_seen(r: &otpgw_sim::LoadReport, into: &mut HashSet<String>) {
    for i in r.states.keys() {
        if let Some(id) = r.ids.get(i) {
            into.insert(id.clone());
        }
    }
    for (id, _) in &r.foreign_receipts {
        into.insert(id.clone());
    }
}

/// Three nodes, the brand bound to each; one node is killed with SIGKILL under load.
/// The others claim its messages after its lease: every acknowledged message
/// reaches the carrier and its receipt reaches the brand, duplicates bounded by what
/// the dead node had in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_one_of_three_nodes_loses_nothing_acknowledged() {
    let Some(redis) = TestRedis::start("kill") else {
        return;
    };
    kill_one_of_three(&url_of(&redis), Some(redis.port)).await;
}

/// The test above on Redis `at` (its port, for what the failure report reads
/// directly, on one Redis).
pub(crate) async fn kill_one_of_three(at: &str, port_for_report: Option<u16>) {
    let sim = common::sim(|c| c.receipt_delay = Duration::from_millis(30)).await;
    let mut nodes = Vec::new();
    for n in ["a", "b", "c"] {
        let dir = common::store_dir(&format!("scale-kill-{n}"));
        let port = common::free_port();
        let cfg = node_config(at, n, port, sim.addr(), "").replace(
            "redis_prefix = \"gw\"",
            "redis_prefix = \"gw\"\nnode_lease_ms = 1500",
        );
        nodes.push(
            common::GwProc::start_with_log(
                &dir,
                port,
                &cfg,
                "info,otpgw=debug,otpgw_carrier=debug",
            )
            .await,
        );
    }
    let per_node = 3_000u64;
    let mut loads = Vec::new();
    for (k, gw) in nodes.iter().enumerate() {
        let mut lc = LoadConfig::new(gw.addr(), "bank", "pw1", per_node);
        lc.first_index = k as u64 * per_node;
        lc.rate = Some(1_500);
        lc.window = 100;
        lc.receipt_timeout = Duration::from_secs(6);
        loads.push(tokio::spawn(loadgen::run(lc)));
    }
    tokio::time::sleep(Duration::from_millis(900)).await;
    nodes[1].kill9();
    let mut acked = HashSet::new();
    let mut ids = HashSet::new();
    let mut by_id = std::collections::HashMap::new();
    let mut receipts = HashSet::new();
    for l in loads {
        let r = tokio::time::timeout(Duration::from_secs(60), l)
            .await
            .expect("load ends")
            .expect("task")
            .expect("load ran");
        acked.extend(r.ids.keys().copied());
        ids.extend(r.ids.values().cloned());
        by_id.extend(r.ids.iter().map(|(i, id)| (id.clone(), *i)));
        receipts_seen(&r, &mut receipts);
    }
    // What is still owed arrives on the surviving nodes' binds.
    for k in [0, 2] {
        let mut lc = LoadConfig::new(nodes[k].addr(), "bank", "pw1", 0);
        lc.expect_receipts = Some(u64::MAX);
        lc.receipt_timeout = Duration::from_secs(4);
        let r = loadgen::run(lc).await.expect("collect");
        receipts_seen(&r, &mut receipts);
    }
    let logs: String = nodes.iter().map(|n| n.logs()).collect();
    assert!(
        logs.contains("took over the work of a dead node"),
        "no node claimed the dead node's work"
    );
    let recs = sim.records();
    let at_carrier: HashSet<u64> = recs.iter().map(|r| index_of(r.text())).collect();
    let lost: Vec<_> = acked
        .iter()
        .filter(|i| !at_carrier.contains(i))
        .take(10)
        .collect();
    assert!(lost.is_empty(), "acknowledged but never sent: {lost:?}");
    let duplicates = recs.len() - at_carrier.len();
    assert!(
        duplicates <= 2 * 200,
        "{duplicates} duplicates: more than the dead node had in flight"
    );
    let no_receipt: Vec<_> = ids
        .iter()
        .filter(|id| !receipts.contains(*id))
        .take(10)
        .collect();
    if !no_receipt.is_empty() {
        for id in no_receipt.iter().take(3) {
            let i = by_id[*id];
            let sims: Vec<_> = recs
                .iter()
                .filter(|r| index_of(r.text()) == i)
                .map(|r| (r.sim_id, r.connection))
                .collect();
            eprintln!("missing {id} index {i}: at the carrier as {sims:?}");
            for (sid, _) in sims {
                let Some(rport) = port_for_report else { break };
                let out = std::process::Command::new("redis-cli")
                    .args(["-p", &rport.to_string(), "eval",
                        "local r = {} for _, e in ipairs(redis.call('XRANGE', KEYS[1], '-', '+')) do local f = e[2] for k = 1, #f, 2 do if f[k] == 'i' and f[k+1] == ARGV[1] then r[#r+1] = table.concat(f, ' ') end end end return r",
                        "1", "gw:rcpt", &sid.to_string()])
                    .output()
                    .expect("redis-cli");
                eprintln!(
                    "  published: {}",
                    String::from_utf8_lossy(&out.stdout).replace('\n', " | ")
                );
            }
        }
        eprintln!(
            "sim: pending receipts {}, receipts acknowledged {}",
            sim.pending_receipts(),
            sim.receipts_sent()
        );
        for l in logs
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR") || l.contains("matched nothing"))
            .take(40)
        {
            eprintln!("{l}");
        }
    }
    assert!(
        no_receipt.is_empty(),
        "acknowledged messages without a receipt at the brand, e.g. {no_receipt:?}"
    );
    eprintln!(
        "acked {}, at the carrier {} ({duplicates} duplicates), receipts for {}",
        acked.len(),
        recs.len(),
        receipts.len()
    );
    for k in [0, 2] {
        assert_eq!(nodes[k].term(Duration::from_secs(10)).await, Some(0));
    }
}

/// Redis killed and restarted under load (one node): brands get temporary errors
/// meanwhile, nothing acknowledged is lost, and service resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_under_load_loses_nothing_acknowledged() {
    let Some(mut redis) = TestRedis::start("restart") else {
        return;
    };
    let sim = common::sim(|c| c.receipt_delay = Duration::from_millis(30)).await;
    let dir = common::store_dir("scale-redis-restart");
    let port = common::free_port();
    let ops: std::net::SocketAddr = format!("127.0.0.1:{}", common::free_port())
        .parse()
        .expect("addr");
    let cfg = node_config(&url_of(&redis), "a", port, sim.addr(), "")
        .replace("listen = \"127.0.0.1:0\"", &format!("listen = \"{ops}\""));
    let mut gw = common::GwProc::start(&dir, port, &cfg).await;
    let (code, metrics) = common::http_get(ops, "/metrics").await;
    assert_eq!(code, 200);
    assert!(metrics.contains("node=\"a\""), "series carry the node id");
    assert_eq!(common::http_get(ops, "/readyz").await.0, 200);
    let mut lc = LoadConfig::new(gw.addr(), "bank", "pw1", 9_000);
    lc.rate = Some(1_500);
    lc.window = 100;
    lc.receipt_timeout = Duration::from_secs(6);
    let load = tokio::spawn(loadgen::run(lc));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    redis.kill9();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        common::http_get(ops, "/readyz").await.0,
        503,
        "not ready while redis is away"
    );
    assert!(redis.spawn(), "redis restarts");
    let r = tokio::time::timeout(Duration::from_secs(60), load)
        .await
        .expect("load ends")
        .expect("task")
        .expect("load ran");
    assert_eq!(common::http_get(ops, "/readyz").await.0, 200, "ready again");
    let temporary = r
        .rejected
        .get(&otpgw_proto::status::ESME_RSYSERR)
        .copied()
        .unwrap_or(0);
    assert!(
        temporary > 0,
        "no temporary errors while redis was down: {:?}",
        r.rejected
    );
    assert!(
        r.accepted > 3_000,
        "service resumed: {} accepted",
        r.accepted
    );
    let mut receipts = HashSet::new();
    receipts_seen(&r, &mut receipts);
    let mut lc = LoadConfig::new(gw.addr(), "bank", "pw1", 0);
    lc.expect_receipts = Some(u64::MAX);
    lc.receipt_timeout = Duration::from_secs(4);
    receipts_seen(&loadgen::run(lc).await.expect("collect"), &mut receipts);
    let at_carrier: HashSet<u64> = sim.records().iter().map(|x| index_of(x.text())).collect();
    let lost: Vec<_> = r
        .ids
        .keys()
        .filter(|i| !at_carrier.contains(i))
        .take(10)
        .collect();
    assert!(lost.is_empty(), "acknowledged but never sent: {lost:?}");
    let no_receipt = r.ids.values().filter(|id| !receipts.contains(*id)).count();
    assert_eq!(no_receipt, 0, "acknowledged messages without a receipt");
    eprintln!("accepted {}, refused {:?}", r.accepted, r.rejected);
    assert_eq!(
        gw.term(Duration::from_secs(10)).await,
        Some(0),
        "{}",
        gw.logs()
    );
}

/// A carrier allowing 3 binds for the account, three nodes configured with 2 binds
/// each: the simulator never sees more than 3 bound at once, and when a node holding
/// slots is killed the others take them over after its lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn carrier_bind_allowance_holds_across_nodes() {
    let Some(redis) = TestRedis::start("binds") else {
        return;
    };
    let sim = common::sim(|_| {}).await;
    let mut nodes = Vec::new();
    for n in ["a", "b", "c"] {
        let dir = common::store_dir(&format!("scale-binds-{n}"));
        let port = common::free_port();
        let cfg = node_config(&url_of(&redis), n, port, sim.addr(), "max_binds_total = 3").replace(
            "redis_prefix = \"gw\"",
            "redis_prefix = \"gw\"\nnode_lease_ms = 1500",
        );
        nodes.push(common::GwProc::start(&dir, port, &cfg).await);
    }
    // Sample the simulator's binds for 3 s, then kill the node with the most slots
    // (judged by its log) and sample again.
    let sample = |secs: u64| {
        let sim = &sim;
        async move {
            let mut most = 0;
            let mut last = 0;
            for _ in 0..secs * 20 {
                last = sim.binds();
                most = most.max(last);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (most, last)
        }
    };
    let (most, last) = sample(3).await;
    assert!(most <= 3, "{most} binds up with an allowance of 3");
    assert_eq!(last, 3, "the allowance is used");
    let held: Vec<usize> = nodes
        .iter()
        .map(|n| n.logs().matches(": bound carrier").count())
        .collect();
    assert!(
        held.iter().sum::<usize>() >= 3,
        "binds seen in the logs: {held:?}"
    );
    let victim = (0..3).max_by_key(|&k| held[k]).expect("three nodes");
    nodes[victim].kill9();
    let (most, last) = sample(4).await;
    assert!(
        most <= 3,
        "{most} binds up with an allowance of 3 after a kill"
    );
    assert_eq!(last, 3, "the dead node's slots were taken over ({held:?})");
    for (k, n) in nodes.iter_mut().enumerate() {
        if k != victim {
            assert_eq!(n.term(Duration::from_secs(10)).await, Some(0));
        }
    }
}

/// A brand that submits on node a (a transmitter: no receiver there) and receives on
/// node b gets its receipts on b: node a hands them over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_reach_the_brand_on_the_node_where_it_receives() {
    use otpgw_proto::rusmpp::{Command, CommandStatus};
    use otpgw_proto::status::{self, cmd};
    let Some(redis) = TestRedis::start("handover") else {
        return;
    };
    let sim = common::sim(|c| c.receipt_delay = Duration::from_millis(20)).await;
    let mut nodes = Vec::new();
    for n in ["a", "b"] {
        let dir = common::store_dir(&format!("scale-handover-{n}"));
        let port = common::free_port();
        let cfg = node_config(&url_of(&redis), n, port, sim.addr(), "");
        nodes.push(common::GwProc::start(&dir, port, &cfg).await);
    }
    // The receiving side on b first (its presence is published within a lease/3).
    let mut lc = LoadConfig::new(nodes[1].addr(), "bank", "pw1", 0);
    lc.expect_receipts = Some(40);
    lc.receipt_timeout = Duration::from_secs(8);
    let receiver = tokio::spawn(loadgen::run(lc));
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let mut tx = common::Raw::connect(nodes[0].addr()).await;
    assert_eq!(
        tx.bind(cmd::BIND_TRANSMITTER, "bank", "pw1", 1).await,
        (cmd::BIND_TRANSMITTER_RESP, status::ESME_ROK, 1)
    );
    let mut ids = HashSet::new();
    for i in 0..40u32 {
        let f = otpgw_proto::pdu::SubmitFields {
            registered_delivery: 1,
            priority_flag: 1,
            ..otpgw_testkit::sample::fields("BANK", &format!("4474009{i:05}"))
        };
        let c = Command::new(
            CommandStatus::EsmeRok,
            2 + i,
            f.to_submit_sm().expect("pdu"),
        );
        tx.send(&c).await;
        let resp = tx.next_command().await.expect("submit_sm_resp");
        assert_eq!(u32::from(resp.status()), status::ESME_ROK);
        ids.insert(otpgw_proto::pdu::submit_sm_resp_id(&resp).expect("id"));
    }
    let r = tokio::time::timeout(Duration::from_secs(30), receiver)
        .await
        .expect("receiver ends")
        .expect("task")
        .expect("receiver ran");
    let got: HashSet<String> = r
        .foreign_receipts
        .iter()
        .map(|(id, _)| id.clone())
        .collect();
    let missing = ids.iter().filter(|id| !got.contains(*id)).count();
    assert_eq!(
        missing, 0,
        "{missing} of 40 receipts did not reach the brand on node b"
    );
    for n in &mut nodes {
        assert_eq!(n.term(Duration::from_secs(10)).await, Some(0));
    }
}

/// The HTTP door on two nodes sharing a Redis: a code sent through node a checks
/// on node b (once), a message taken by a has its status on b, and an
/// Idempotency-Key used on a answers the same id on b.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verifications_statuses_and_keys_are_shared_by_the_nodes() {
    let Some(redis) = TestRedis::start("http") else {
        return;
    };
    shared_records(&url_of(&redis)).await;
}

/// The test above on Redis `at`.
pub(crate) async fn shared_records(at: &str) {
    let sim = common::sim(|c| c.receipt_delay = std::time::Duration::from_millis(10)).await;
    let mut bases = Vec::new();
    let mut nodes = Vec::new();
    for n in ["a", "b"] {
        let dir = common::store_dir(&format!("scale-http-{n}"));
        let (port, http_port) = (common::free_port(), common::free_port());
        let store = format!("backend = \"redis\"\n{at}\nnode_id = \"{n}\"\nredis_prefix = \"gw\"");
        let (brands, sections) = common::http_pieces(http_port);
        let cfg = common::config_text_full(
            &format!("127.0.0.1:{port}"),
            &[("sim", sim.addr())],
            "receipt_ids = \"hex_to_decimal\"",
            &store,
            [&brands[0], &brands[1]],
            &sections,
        );
        nodes.push(common::GwProc::start(&dir, port, &cfg).await);
        common::wait_port(http_port).await;
        bases.push(format!("http://127.0.0.1:{http_port}"));
    }
    let http = reqwest::Client::new();
    let post = |base: &str, path: &str, body: serde_json::Value, idem: Option<&str>| {
        let mut r = http
            .post(format!("{base}{path}"))
            .bearer_auth(common::BANK_KEY)
            .json(&body);
        if let Some(k) = idem {
            r = r.header("Idempotency-Key", k);
        }
        async move {
            let r = r.send().await.unwrap();
            let st = r.status().as_u16();
            (st, r.json::<serde_json::Value>().await.unwrap())
        }
    };
    let (st, v) = post(
        &bases[0],
        "/v1/verifications",
        serde_json::json!({"to": "+447400900700"}),
        None,
    )
    .await;
    assert_eq!(st, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let code = common::code_sent_to(&sim, "447400900700", 0).await;
    let check = |base: usize| {
        post(
            &bases[base],
            &format!("/v1/verifications/{id}/check"),
            serde_json::json!({"code": code}),
            None,
        )
    };
    assert_eq!(
        check(1).await.1["status"],
        "approved",
        "checked on the other node"
    );
    assert_eq!(check(0).await.1["status"], "denied", "once");

    let msg = serde_json::json!({"to": "+447400900701", "from": "BANK", "text": "hello"});
    let (st, v) = post(&bases[0], "/v1/messages", msg.clone(), Some("k-701")).await;
    assert_eq!(st, 202);
    let mid = v["id"].as_str().unwrap().to_string();
    let (st, v) = post(&bases[1], "/v1/messages", msg, Some("k-701")).await;
    assert_eq!(
        (st, v["id"].as_str()),
        (202, Some(mid.as_str())),
        "same key, other node: same id"
    );
    let mut status = serde_json::Value::Null;
    for _ in 0..200 {
        let r = http
            .get(format!("{}/v1/messages/{mid}", bases[1]))
            .bearer_auth(common::BANK_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "node b knows node a's message");
        status = r.json().await.unwrap();
        if status["status"] == "delivered" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(status["status"], "delivered", "{status}");
    assert_eq!(status["carrier"], "sim");
    assert_eq!(
        sim.records()
            .iter()
            .filter(|r| r.fields.dest.addr == "447400900701")
            .count(),
        1,
        "sent once"
    );
    drop(nodes);
    sim.shutdown();
}

/// Two nodes on one Redis, the brand bound with a transceiver to each (node-smpp on
/// a, python-smpplib on b), both submitting at once: each bind gets the receipt of
/// every message it submitted and none of the other's, though the carrier sends
/// receipts on any of the four binds (so many reach the node that did not send
/// the message, which publishes them to the one that did).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_bind_gets_its_own_receipts_across_nodes() {
    use crate::interop::{node_smpp_available, smpplib_available};
    use std::process::{Command, Stdio};
    if !smpplib_available() || !node_smpp_available() {
        assert!(
            std::env::var_os("OTPGW_REQUIRE_INTEROP").is_none(),
            "python smpplib and node smpp are required (scripts/test-deps.sh installs them)"
        );
        eprintln!("SKIPPED: smpplib or node smpp not installed");
        return;
    }
    let Some(redis) = TestRedis::start("own-receipts") else {
        return;
    };
    let sim = common::sim(|c| c.receipt_delay = Duration::from_millis(5)).await;
    let mut nodes = Vec::new();
    for n in ["a", "b"] {
        let dir = common::store_dir(&format!("scale-own-{n}"));
        let port = common::free_port();
        let cfg = node_config(&url_of(&redis), n, port, sim.addr(), "");
        nodes.push(common::GwProc::start(&dir, port, &cfg).await);
    }
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/interop");
    let (pa, pb) = (
        nodes[0].addr().port().to_string(),
        nodes[1].addr().port().to_string(),
    );
    let js = Command::new("node")
        .arg(format!("{dir}/node_smpp_client.js"))
        .args(["--port", &pa, "--system-id", "bank", "--password", "pw1"])
        .args(["--count", "300", "--own-only"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let py = Command::new("python3")
        .arg(format!("{dir}/smpplib_client.py"))
        .args(["--port", &pb, "--system-id", "bank", "--password", "pw1"])
        .args(["--count", "300"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (js, py) = tokio::task::spawn_blocking(move || {
        (
            js.wait_with_output().unwrap(),
            py.wait_with_output().unwrap(),
        )
    })
    .await
    .unwrap();
    for (name, out) in [("node smpp on a", &js), ("smpplib on b", &py)] {
        let stdout = String::from_utf8_lossy(&out.stdout);
        eprintln!("{name}: {stdout}");
        assert!(
            out.status.success()
                && (stdout.contains("\"ok\": true") || stdout.contains("\"ok\":true")),
            "{name}: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(sim.received(), 600);
    // Receipts crossed nodes: some reached the node that did not send the message.
    let mut crossed = 0.0;
    for n in &nodes {
        let ops = crate::ops::ops_addr_in(n);
        let v = crate::ops::scrape_sum(ops, "otpgw_receipts_from_other_nodes_total").await;
        eprintln!("{ops}: {v} receipts from other nodes");
        crossed += v;
    }
    assert!(
        crossed > 0.0,
        "no receipt crossed nodes: the test proves nothing"
    );
    for n in &mut nodes {
        assert_eq!(n.term(Duration::from_secs(10)).await, Some(0));
    }
}
