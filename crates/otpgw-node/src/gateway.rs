//! Assembly: builds the store, tracker, dispatcher, carriers and brand server from a
//! [`Config`] and runs them until shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use otpgw_carrier::Carrier;
use otpgw_core::message::IdGen;
use otpgw_core::outbox::Outbox;
use otpgw_core::tracker::Tracker;
use otpgw_core::{Store, clock};
use otpgw_dispatch::Dispatcher;
use otpgw_ingest::{Acceptor, Brands, Server};
use otpgw_store::{EmbeddedStore, MemoryStore};

use crate::config::{Backend, Config};

/// A running gateway.
pub struct Gateway {
    brand_addr: SocketAddr,
    tls_addr: Option<SocketAddr>,
    shutdown: CancellationToken,
    server: JoinHandle<()>,
    carriers: Vec<Carrier>,
    tracker: Arc<Tracker>,
    dispatcher: Arc<Dispatcher>,
    acceptor: Arc<Acceptor>,
    memory: Option<Arc<MemoryStore>>,
    embedded: Option<Arc<EmbeddedStore>>,
    grace: std::time::Duration,
    ops_addr: Option<SocketAddr>,
    http_addr: Option<SocketAddr>,
    ingest: Arc<otpgw_ingest::server::Context>,
    /// The configuration in force (for reloads).
    current: parking_lot::Mutex<Config>,
}

/// `/readyz`: the store is healthy and every route has a carrier with a bind up.
struct GatewayReadiness {
    store: Arc<dyn Store>,
    carriers: Vec<Arc<otpgw_carrier::Shared>>,
    routes: Vec<Vec<String>>,
}

/// The admin API's view of the gateway.
struct GatewayAdmin {
    carriers: Vec<Arc<otpgw_carrier::Shared>>,
    dispatcher: Arc<Dispatcher>,
    tracker: Arc<Tracker>,
    ingest: Arc<otpgw_ingest::server::Context>,
}

impl crate::ops::Admin for GatewayAdmin {
    fn carriers(&self) -> serde_json::Value {
        use otpgw_core::Class;
        serde_json::Value::Array(
            self.carriers
                .iter()
                .map(|c| {
                    serde_json::json!({
                        "name": c.cfg.name,
                        "binds_up": c.bound(),
                        "binds_configured": c.cfg.binds,
                        "window": c.window(),
                        "paused": c.is_paused(),
                        "submitted_last_second": c.rate(),
                        "rate_limit_configured": c.cfg.rate_limit,
                        "rate_limit_now": c.limiter.lock().rate().map(|r| r.round()),
                        "queued": {"otp": c.queue.len_class(Class::Otp), "bulk": c.queue.len_class(Class::Bulk)},
                    })
                })
                .collect(),
        )
    }
    fn set_paused(&self, carrier: &str, paused: bool) -> Option<serde_json::Value> {
        let c = self.carriers.iter().find(|c| c.cfg.name == carrier)?;
        c.set_paused(paused);
        Some(serde_json::json!({"name": c.cfg.name, "paused": c.is_paused()}))
    }
    fn brands(&self) -> serde_json::Value {
        let mut v: Vec<_> = self
            .ingest
            .sessions
            .iter()
            .map(|e| serde_json::json!({"system_id": &**e.key(), "sessions": *e.value()}))
            .collect();
        v.sort_by(|a, b| a["system_id"].as_str().cmp(&b["system_id"].as_str()));
        serde_json::Value::Array(v)
    }
    fn quality(&self) -> serde_json::Value {
        let now = clock::now_ms();
        let q = self.dispatcher.quality().lock();
        let cfg = q.config().clone();
        let rows: Vec<serde_json::Value> = q
            .rows(now)
            .into_iter()
            .map(|r| {
                serde_json::json!({
                    "carrier": &*r.carrier,
                    "prefix": r.prefix,
                    "samples": r.stats.samples,
                    "delivered_on_time": r.stats.within,
                    "delivered_late": r.stats.late,
                    "failed": r.stats.failed,
                    "no_receipt": r.stats.timed_out,
                    "on_time_ratio": r.stats.within_ratio(),
                    "delivered_ratio": r.stats.delivered_ratio(),
                    "receipt_p50_ms": r.stats.p50_ms,
                    "receipt_p90_ms": r.stats.p90_ms,
                })
            })
            .collect();
        serde_json::json!({
            "window_secs": cfg.window_ms / 1000,
            "on_time_within_ms": cfg.within_ms,
            "prefix_digits": cfg.prefix_digits,
            "series": rows,
        })
    }
    fn queue(&self) -> serde_json::Value {
        serde_json::json!({
            "queued": self.dispatcher.depth(),
            "in_flight": self.tracker.len(),
            "receipts_waiting": self.tracker.outbox().total(),
        })
    }
}

impl crate::ops::Readiness for GatewayReadiness {
    fn ready(&self) -> Result<(), String> {
        if !self.store.is_healthy() {
            return Err("store failing".into());
        }
        let up = |name: &String| {
            self.carriers
                .iter()
                .any(|c| &c.cfg.name == name && c.bound() > 0)
        };
        for route in &self.routes {
            if !route.iter().any(up) {
                return Err(format!("no carrier bound for route {route:?}"));
            }
        }
        Ok(())
    }
}

/// What recovery found at start.
#[derive(Debug, Default, Clone, Copy)]
pub struct RecoverySummary {
    /// Unconfirmed messages queued again.
    pub requeued: usize,
    /// Of those, how many may already have reached a carrier (possible duplicates).
    pub possibly_sent: usize,
    /// Confirmed by a carrier, waiting for their receipt again.
    pub awaiting_receipt: usize,
    /// Past their deadline: finished as EXPIRED, never sent.
    pub expired: usize,
    /// Receipts owed to brands, queued again.
    pub receipts: usize,
}

impl Gateway {
    /// Start everything the config describes. The brand listener is bound when this
    /// returns (port 0 in the config picks a free port: see [`Gateway::brand_addr`]).
    pub async fn start(cfg: &Config) -> anyhow::Result<Self> {
        Ok(Self::start_with_summary(cfg).await?.0)
    }

    /// Start, and say what recovery found.
    pub async fn start_with_summary(cfg: &Config) -> anyhow::Result<(Self, RecoverySummary)> {
        if cfg.ops.enabled {
            let node = (cfg.store.backend == Backend::Redis).then_some(cfg.store.node_id.as_str());
            crate::ops::recorder_for_node(node);
        }
        let mut memory = None;
        let mut embedded = None;
        // First message id; with Redis the node's number goes in the top byte so
        // nodes sharing a Redis never hand out the same id.
        let mut id_start = clock::now_us();
        let mut shared_limit: Option<Arc<dyn otpgw_core::shared_limit::SharedLimit>> = None;
        let mut bind_slots: Option<Arc<dyn otpgw_core::shared_limit::BindSlots>> = None;
        let store: Arc<dyn Store> = match cfg.store.backend {
            Backend::Memory => {
                tracing::warn!(
                    "store backend is MEMORY: accepted messages and pending receipts are LOST on a crash or restart"
                );
                let m = Arc::new(MemoryStore::new());
                memory = Some(m.clone());
                m
            }
            Backend::Embedded => {
                let e =
                    Arc::new(EmbeddedStore::open(cfg.embedded_config()).with_context(|| {
                        format!("cannot open the store {}", cfg.store.path.display())
                    })?);
                tracing::info!(path = %cfg.store.path.display(), "embedded store open");
                embedded = Some(e.clone());
                e
            }
            Backend::Log => {
                let l = Arc::new(otpgw_store::LogStore::open(cfg.log_config()).with_context(
                    || format!("cannot open the log store {}", cfg.store.path.display()),
                )?);
                tracing::info!(path = %cfg.store.path.display(), "log store open");
                l
            }
            Backend::Redis => {
                let r = otpgw_store::RedisStore::open(cfg.redis_config())
                    .await
                    .with_context(|| {
                        format!(
                            "cannot open the redis store (node {}, prefix {})",
                            cfg.store.node_id, cfg.store.redis_prefix
                        )
                    })?;
                tracing::info!(node = %cfg.store.node_id, number = r.node_number(), prefix = %cfg.store.redis_prefix, "redis store open");
                id_start = otpgw_store::redis_store::id_start(r.node_number(), id_start);
                let l = Arc::new(
                    otpgw_store::RedisRateLimit::connect(
                        &cfg.store.redis_url,
                        &cfg.store.redis_prefix,
                        std::time::Duration::from_secs(2),
                        &cfg.store.node_id,
                        std::time::Duration::from_millis(cfg.store.node_lease_ms),
                    )
                    .await
                    .map_err(|e| {
                        anyhow::anyhow!("cannot connect the shared carrier limits to redis: {e}")
                    })?,
                );
                if cfg.store.share_carrier_limits {
                    shared_limit = Some(l.clone());
                }
                bind_slots = Some(l);
                Arc::new(r)
            }
        };
        let now = clock::now_ms();
        let recovered = store.recover(now).context("cannot read the store")?;
        let outbox = Arc::new(Outbox::new(cfg.receipts.outbox_capacity));
        let tracker = Arc::new(Tracker::new(store, outbox));
        let names: Vec<String> = cfg.carriers.iter().map(|c| c.name.clone()).collect();
        let dispatcher = Arc::new(Dispatcher::new(cfg.routes(), &names, cfg.queue.capacity));
        dispatcher.set_refuse_after_down(cfg.queue.refuse_after_down_ms);
        dispatcher.set_quality(cfg.quality.config(), cfg.quality.explore);
        tracker.assure().set_policies(cfg.assurance_policies());
        let mut summary = RecoverySummary::default();

        // Messages a carrier confirmed: their receipts must still match after the restart.
        let mut preload: std::collections::HashMap<String, Vec<(String, otpgw_core::MsgId)>> =
            Default::default();
        for (m, carrier, cid) in recovered.confirmed {
            if !names.contains(&carrier) {
                tracing::warn!(%carrier, id = %m.id, "message confirmed by a carrier no longer configured; its receipt cannot arrive");
            }
            preload.entry(carrier).or_default().push((cid, m.id));
            tracker.insert(Arc::new(m));
            summary.awaiting_receipt += 1;
        }
        let shutdown = CancellationToken::new();
        let grace = std::time::Duration::from_secs(cfg.server.shutdown_grace_secs);
        let mut carriers = Vec::new();
        for mut cc in cfg.carrier_configs() {
            cc.drain_grace = grace;
            cc.shared_limit = shared_limit.clone();
            if cc.max_binds_total.is_some() {
                cc.bind_slots = bind_slots.clone();
            }
            let q = dispatcher.queue(&cc.name).context("carrier queue")?;
            let pre = preload.remove(&cc.name).unwrap_or_default();
            carriers.push(Carrier::spawn_with(
                cc,
                q,
                tracker.clone(),
                shutdown.child_token(),
                pre,
                Some(dispatcher.clone()),
            ));
        }
        // Delivery assurance: resends through other carriers, carrier quality, and
        // the OTPs the previous run left with their attempts.
        let shared: Vec<Arc<otpgw_carrier::Shared>> =
            carriers.iter().map(|c| c.shared().clone()).collect();
        let hooks = Arc::new(crate::assurance::Hooks::new(
            dispatcher.clone(),
            shared.clone(),
        ));
        tracker.assure().set_hooks(hooks.clone());
        summary.awaiting_receipt +=
            crate::assurance::adopt(&tracker, &shared, recovered.attempts, now);
        crate::assurance::spawn(tracker.clone(), hooks, shutdown.child_token());
        adopt(
            recovered.unconfirmed,
            recovered.receipts,
            &tracker,
            &dispatcher,
            now,
            &mut summary,
        );
        tracing::info!(
            requeued = summary.requeued,
            possibly_sent = summary.possibly_sent,
            awaiting_receipt = summary.awaiting_receipt,
            expired = summary.expired,
            receipts = summary.receipts,
            "recovered state of the previous run"
        );
        let acceptor = Arc::new(Acceptor::new(
            dispatcher.clone(),
            tracker.clone(),
            IdGen::starting_at(id_start),
        ));
        let server = Server::bind(
            cfg.server_config(),
            Brands::new(cfg.brand_configs()),
            acceptor.clone(),
            tracker.clone(),
            shutdown.child_token(),
        )
        .await
        .with_context(|| format!("cannot listen on {}", cfg.server.listen))?;
        let tls_addr = server.tls_addr();
        let brand_addr = server
            .local_addr()
            .or(tls_addr)
            .context("no brand listener")?;
        let ingest = server.context();
        let server = tokio::spawn(server.run());
        // Webhooks owed (this run's, and a previous run's) go out whether or not the
        // HTTP listener runs.
        let hooks = cfg.http_config().map(|h| h.webhooks).unwrap_or_default();
        otpgw_http::webhook::spawn(
            tracker.outbox().clone(),
            tracker.store().clone(),
            ingest.brands.clone(),
            hooks,
            shutdown.child_token(),
        )
        .map_err(|e| anyhow::anyhow!("cannot start the webhook sender: {e}"))?;
        let http_addr = match cfg.http_config() {
            Some(h) => {
                let listen = h.listen;
                let verifier = cfg
                    .verify_config()
                    .map(|v| Arc::new(otpgw_verify::Verifier::new(v, acceptor.clone())));
                if verifier.is_none() {
                    tracing::warn!("no [verify] section: the Verify API answers 503");
                }
                let r = otpgw_http::start(h, ingest.clone(), verifier, shutdown.child_token())
                    .await
                    .with_context(|| format!("cannot listen on {listen} for the HTTP API"))?;
                Some(r.addr)
            }
            None => None,
        };
        spawn_sharing(
            tracker.clone(),
            dispatcher.clone(),
            carriers.iter().map(|c| c.shared().clone()).collect(),
            cfg.redis_config().lease,
            shutdown.child_token(),
        );
        let ops_addr = if cfg.ops.enabled {
            let readiness = Arc::new(GatewayReadiness {
                store: tracker.store().clone(),
                carriers: carriers.iter().map(|c| c.shared().clone()).collect(),
                routes: cfg.route_lists(),
            });
            let admin = cfg.ops.admin_token.clone().map(|t| {
                let a: Arc<dyn crate::ops::Admin> = Arc::new(GatewayAdmin {
                    carriers: carriers.iter().map(|c| c.shared().clone()).collect(),
                    dispatcher: dispatcher.clone(),
                    tracker: tracker.clone(),
                    ingest: ingest.clone(),
                });
                (a, t)
            });
            Some(
                crate::ops::serve(cfg.ops.listen, readiness, admin, shutdown.child_token())
                    .await
                    .with_context(|| format!("cannot listen on {} for ops", cfg.ops.listen))?,
            )
        } else {
            None
        };
        tracing::info!(%brand_addr, tls_addr = ?tls_addr, carriers = carriers.len(), "otpgw started");
        Ok((
            Self {
                brand_addr,
                tls_addr,
                shutdown,
                server,
                carriers,
                tracker,
                dispatcher,
                acceptor,
                memory,
                embedded,
                grace,
                ops_addr,
                http_addr,
                ingest,
                current: parking_lot::Mutex::new(cfg.clone()),
            },
            summary,
        ))
    }

    /// Where brands connect: the plain listener, or the TLS one when it is the only one.
    pub fn brand_addr(&self) -> SocketAddr {
        self.brand_addr
    }
    /// The TLS listener, when configured.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }
    /// Where /metrics, /healthz and /readyz are served, if enabled.
    pub fn ops_addr(&self) -> Option<SocketAddr> {
        self.ops_addr
    }
    /// Where the HTTP API is served, if configured.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }
    /// Messages accepted and not yet finished.
    pub fn in_flight(&self) -> usize {
        self.tracker.len()
    }
    /// Messages waiting in carrier queues.
    pub fn queued(&self) -> usize {
        self.dispatcher.depth()
    }
    /// Receipts waiting for brands.
    pub fn receipts_waiting(&self) -> usize {
        self.tracker.outbox().total()
    }
    /// Binds up, per carrier.
    pub fn binds_up(&self) -> Vec<(String, usize)> {
        self.carriers
            .iter()
            .map(|c| (c.name().to_string(), c.bound()))
            .collect()
    }
    /// (accepted, finished, receipts forwarded), when the store is the memory store.
    pub fn counts(&self) -> Option<(u64, u64, u64)> {
        self.memory.as_ref().map(|m| m.counts())
    }

    /// Wait until every carrier has at least `n` binds up, or the timeout passes.
    pub async fn wait_bound(&self, n: usize, timeout: std::time::Duration) -> bool {
        let end = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < end {
            if self.carriers.iter().all(|c| c.bound() >= n) {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        false
    }

    /// Apply a new, already validated configuration without dropping sessions:
    /// brands (new binds use the new credentials), routes, and each carrier's window.
    /// Refused as a whole (the old configuration stays) when carriers were added or
    /// removed. Returns the changes that need a restart to take effect.
    pub fn reload(&self, new: &Config) -> Result<Vec<String>, String> {
        let mut cur = self.current.lock();
        let names = |c: &Config| {
            let mut v: Vec<String> = c.carriers.iter().map(|c| c.name.clone()).collect();
            v.sort();
            v
        };
        if names(&cur) != names(new) {
            return Err("carriers were added or removed: that needs a restart".into());
        }
        self.dispatcher.set_routes(new.routes())?;
        self.dispatcher
            .set_refuse_after_down(new.queue.refuse_after_down_ms);
        self.dispatcher.set_explore(new.quality.explore);
        self.tracker.assure().set_policies(new.assurance_policies());
        *self.ingest.brands.write() = Brands::new(new.brand_configs());
        let mut restart = Vec::new();
        for (c, old) in new.carriers.iter().zip(cur.carriers.iter()) {
            if let Some(k) = self.carriers.iter().find(|k| k.name() == c.name) {
                k.shared().set_window(c.window);
                k.shared()
                    .limiter
                    .lock()
                    .set_cap(c.rate_limit.map(f64::from), std::time::Instant::now());
            }
            if c.address != old.address
                || c.system_id != old.system_id
                || c.password != old.password
                || c.binds != old.binds
            {
                restart.push(format!(
                    "carrier {:?}: address, credentials or binds",
                    c.name
                ));
            }
        }
        if new.server.listen != cur.server.listen {
            restart.push("server.listen".into());
        }
        if new.store.path != cur.store.path
            || new.store.backend != cur.store.backend
            || new.store.redis_url != cur.store.redis_url
            || new.store.redis_prefix != cur.store.redis_prefix
            || new.store.node_id != cur.store.node_id
            || new.store.share_carrier_limits != cur.store.share_carrier_limits
        {
            restart.push("store".into());
        }
        if new.ops.listen != cur.ops.listen || new.ops.admin_token != cur.ops.admin_token {
            restart.push("ops".into());
        }
        if new.http.as_ref().map(|h| h.listen) != cur.http.as_ref().map(|h| h.listen)
            || new.verify.is_some() != cur.verify.is_some()
        {
            restart.push("http / verify".into());
        }
        *cur = new.clone();
        Ok(restart)
    }

    /// The embedded store, when that is the backend.
    pub fn embedded(&self) -> Option<&Arc<EmbeddedStore>> {
        self.embedded.as_ref()
    }

    /// Graceful stop: new submits get ESME_RTHROTTLED, brands are unbound, carrier
    /// binds stop taking messages and wait (up to the grace period) for their windows
    /// to drain, then unbind; the store is flushed and closed. What could not be
    /// drained stays in the store and goes out after the next start.
    pub async fn shutdown(self) {
        self.acceptor.close();
        self.shutdown.cancel();
        let _ = self.server.await;
        let limit = self.grace + std::time::Duration::from_secs(3);
        let carriers = async {
            for c in self.carriers {
                c.join().await;
            }
        };
        if tokio::time::timeout(limit, carriers).await.is_err() {
            tracing::warn!("carrier binds did not stop within the grace period");
        }
        if !self.tracker.store().flush().wait().await {
            tracing::error!("store flush failed at shutdown");
        }
        if let Some(e) = self.embedded {
            let e2 = e.clone();
            let _ = tokio::task::spawn_blocking(move || e2.close()).await;
        }
        tracing::info!("otpgw stopped");
    }
}

/// Take on messages no carrier confirmed (queued again with their remaining
/// validity, or finished as EXPIRED when it ran out) and receipts owed to brands:
/// at start from the previous run, and at run time from a dead node's claim.
fn adopt(
    unconfirmed: Vec<(otpgw_core::Message, bool)>,
    receipts: Vec<otpgw_core::outbox::ReceiptJob>,
    tracker: &Arc<Tracker>,
    dispatcher: &Dispatcher,
    now: u64,
    summary: &mut RecoverySummary,
) {
    let before = summary.possibly_sent;
    for (m, sent) in unconfirmed {
        let m = Arc::new(m);
        tracker.insert(m.clone());
        if m.deadline_ms <= now {
            tracker.finish(m.id, otpgw_core::DeliveryState::Expired, None, now);
            summary.expired += 1;
            continue;
        }
        match dispatcher.route(&m.brand, &m.fields.dest.addr) {
            Ok(q) => {
                q.push(m, now);
                summary.requeued += 1;
                if sent {
                    summary.possibly_sent += 1;
                }
            }
            Err(_) => {
                tracing::warn!(id = %m.id, "recovered message has no route any more");
                tracker.finish(
                    m.id,
                    otpgw_core::DeliveryState::Undeliverable,
                    Some("RTE"),
                    now,
                );
            }
        }
    }
    metrics::counter!("otpgw_recovered_possible_duplicates_total")
        .increment((summary.possibly_sent - before) as u64);
    for j in receipts {
        tracker.restore_receipt(j);
        summary.receipts += 1;
    }
}

/// Several nodes on one store: offer receipts other nodes could not match to this
/// node's carriers, and every half lease claim what dead nodes left.
fn spawn_sharing(
    tracker: Arc<Tracker>,
    dispatcher: Arc<Dispatcher>,
    carriers: Vec<Arc<otpgw_carrier::Shared>>,
    lease: std::time::Duration,
    shutdown: CancellationToken,
) {
    let store = tracker.store().clone();
    if !store.is_shared() {
        return;
    }
    if let Some(rx) = store.take_foreign_receipts() {
        tokio::spawn(offer_foreign_receipts(
            rx,
            carriers.clone(),
            shutdown.clone(),
        ));
    }
    // Receipts other nodes handed over: owed to a brand bound here.
    if let Some(mut rx) = store.take_handed_receipts() {
        let (tracker, stop) = (tracker.clone(), shutdown.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    j = rx.recv() => match j {
                        Some(j) => tracker.restore_receipt(j),
                        None => return,
                    },
                }
            }
        });
    }
    // Receipts for brands with no receiver here go to a node where they have one.
    {
        let (tracker, stop) = (tracker.clone(), shutdown.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_millis(250));
            let mut jobs = Vec::new();
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let store = tracker.store().clone();
                for (brand, ob) in tracker.outbox().all() {
                    while !ob.is_empty() && !store.brand_bound_here(&brand) {
                        jobs.clear();
                        ob.try_take(500, &mut jobs);
                        match store.hand_over_receipts(&brand, &jobs).await {
                            Ok(true) => {
                                metrics::counter!("otpgw_receipts_handed_over_total")
                                    .increment(jobs.len() as u64);
                            }
                            Ok(false) | Err(_) => {
                                ob.push_front(jobs.drain(..));
                                break;
                            }
                        }
                    }
                }
            }
        });
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(lease / 2);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let now = clock::now_ms();
            let rec = match store.claim_orphans(now).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot look for dead nodes' work");
                    continue;
                }
            };
            if rec.unconfirmed.is_empty()
                && rec.confirmed.is_empty()
                && rec.receipts.is_empty()
                && rec.attempts.is_empty()
            {
                continue;
            }
            let mut summary = RecoverySummary::default();
            for (m, carrier, cid) in rec.confirmed {
                match carriers.iter().find(|c| c.cfg.name == carrier) {
                    Some(c) => c.matcher.lock().preload(&cid, m.id),
                    None => {
                        tracing::warn!(%carrier, id = %m.id, "claimed message confirmed by a carrier not configured here")
                    }
                }
                tracker.insert(Arc::new(m));
                summary.awaiting_receipt += 1;
            }
            summary.awaiting_receipt +=
                crate::assurance::adopt(&tracker, &carriers, rec.attempts, now);
            adopt(
                rec.unconfirmed,
                rec.receipts,
                &tracker,
                &dispatcher,
                now,
                &mut summary,
            );
            // Receipts for the claimed messages may have been published already.
            store.rescan_receipts();
            tracing::warn!(
                requeued = summary.requeued,
                possibly_sent = summary.possibly_sent,
                awaiting_receipt = summary.awaiting_receipt,
                expired = summary.expired,
                receipts = summary.receipts,
                "took over the work of a dead node"
            );
        }
    });
}

/// Offer the receipts other nodes published to this node's carriers. A receipt can
/// come before this node has the carrier's response for its message: one that
/// matches nothing is tried again after 0.1, 0.5 and 2 seconds; one with several
/// candidates (the carrier's id convention is not learned yet) every half second
/// for a minute. At most RETRY_MAX wait; beyond that a new one is not retried.
async fn offer_foreign_receipts(
    mut rx: tokio::sync::mpsc::Receiver<otpgw_core::store::ForeignReceipt>,
    carriers: Vec<Arc<otpgw_carrier::Shared>>,
    stop: CancellationToken,
) {
    use otpgw_carrier::matcher::Lookup;
    use std::cmp::Reverse;
    const RETRY_MAX: usize = 200_000;
    const AGAIN_MS: [u64; 3] = [100, 500, 2000];
    const AMBIGUOUS_TRIES: usize = 120;
    // (when, tries so far, order of arrival) -> receipt; earliest first.
    let mut again = std::collections::BinaryHeap::new();
    let mut waiting: std::collections::HashMap<u64, otpgw_core::store::ForeignReceipt> =
        Default::default();
    let mut seq = 0u64;
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(50));
    // When to try again after try `n` (`None`: matched, or give up).
    let offer = |f: &otpgw_core::store::ForeignReceipt, n: usize| {
        let found = carriers
            .iter()
            .find(|c| c.cfg.name == f.carrier)
            .map_or(Lookup::None, |c| c.on_foreign_receipt(&f.receipt));
        let ms = match found {
            Lookup::Found(_) => {
                metrics::counter!("otpgw_receipts_from_other_nodes_total").increment(1);
                return None;
            }
            Lookup::Ambiguous if n < AMBIGUOUS_TRIES => 500,
            Lookup::None if n < AGAIN_MS.len() => AGAIN_MS[n],
            _ => return None,
        };
        Some(tokio::time::Instant::now() + std::time::Duration::from_millis(ms))
    };
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            f = rx.recv() => {
                let Some(f) = f else { return };
                if let Some(at) = offer(&f, 0)
                    && waiting.len() < RETRY_MAX
                {
                    seq += 1;
                    again.push(Reverse((at, 1usize, seq)));
                    waiting.insert(seq, f);
                }
            }
            _ = tick.tick() => {
                let now = tokio::time::Instant::now();
                while let Some(Reverse((at, n, k))) = again.peek().copied() {
                    if at > now {
                        break;
                    }
                    again.pop();
                    let Some(f) = waiting.remove(&k) else { continue };
                    if let Some(at) = offer(&f, n) {
                        again.push(Reverse((at, n + 1, k)));
                        waiting.insert(k, f);
                    }
                }
            }
        }
    }
}
