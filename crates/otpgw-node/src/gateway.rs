//! Assembly: [`Gateway::start`] builds the store, tracker, dispatcher, carriers and
//! doors from a [`Config`], takes on what the previous run left, and runs them until
//! [`Gateway::shutdown`]. The order matters: carriers are built before recovery
//! (their matchers take the recovered carrier ids) and their binds start after it
//! (so no receipt arrives before its carrier id is known); the doors open last.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use otpgw_accept::{Acceptor, Brands};
use otpgw_carrier::{Carrier, CarrierState};
use otpgw_core::clock::{self, SystemClock};
use otpgw_core::message::IdGen;
use otpgw_core::outbox::Outbox;
use otpgw_core::public_id::IdCipher;
use otpgw_core::tracker::Tracker;
use otpgw_dispatch::Dispatcher;
use otpgw_smpp_server::Server;
use otpgw_store::{EmbeddedStore, MemoryStore};

use crate::StartError;
use crate::admin::{GatewayAdmin, GatewayReadiness};
use crate::config::{Backend, Config};
use crate::recovery::{RecoverySummary, adopt};

/// A running gateway.
pub struct Gateway {
    brand_addr: SocketAddr,
    tls_addr: Option<SocketAddr>,
    shutdown: CancellationToken,
    server: JoinHandle<()>,
    pub(crate) carriers: Vec<Carrier>,
    pub(crate) tracker: Arc<Tracker>,
    pub(crate) dispatcher: Arc<Dispatcher>,
    pub(crate) acceptor: Arc<Acceptor>,
    memory: Option<Arc<MemoryStore>>,
    embedded: Option<Arc<EmbeddedStore>>,
    grace: Duration,
    ops_addr: Option<SocketAddr>,
    http_addr: Option<SocketAddr>,
    /// The configuration in force (for reloads).
    pub(crate) current: parking_lot::Mutex<Config>,
    /// The audit log (`[audit]`), for changes not made through the admin API.
    pub(crate) audit: Option<Arc<crate::audit::Audit>>,
}

/// The brand-facing side once started.
struct Doors {
    server: JoinHandle<()>,
    brand_addr: SocketAddr,
    tls_addr: Option<SocketAddr>,
    http_addr: Option<SocketAddr>,
    smpp: Arc<otpgw_smpp_server::Context>,
    verifier: Option<Arc<otpgw_verify::Verifier>>,
}

impl Gateway {
    /// Start everything the config describes. The brand listener is bound when this
    /// returns (port 0 in the config picks a free port: see [`Gateway::brand_addr`]).
    pub async fn start(cfg: &Config) -> Result<Self, StartError> {
        Ok(Self::start_with_summary(cfg).await?.0)
    }

    /// Start, and say what recovery found.
    pub async fn start_with_summary(cfg: &Config) -> Result<(Self, RecoverySummary), StartError> {
        if cfg.ops.enabled {
            let node = (cfg.store.backend == Backend::Redis).then_some(cfg.store.node_id.as_str());
            crate::ops::recorder_for_node(node);
            crate::series::zero(cfg);
        }
        // The numbering plans every destination is checked against, loaded before
        // the first brand's message rather than during it.
        let took = otpgw_accept::number::warm_up();
        tracing::debug!(ms = took.as_millis() as u64, "numbering plans loaded");
        let opened = crate::stores::open(cfg).await?;
        let now = clock::now_ms();
        let recovered = opened
            .store
            .recover(now)
            .map_err(|e| StartError::store("cannot read the store", e))?;
        opened.store.set_status_retention(cfg.status_retention());
        let outbox = Arc::new(Outbox::new(cfg.receipts.outbox_capacity));
        let tracker = Arc::new(Tracker::new(opened.store.clone(), outbox));
        let dispatcher = Arc::new(dispatcher(cfg));
        tracker.assure().set_policies(cfg.assurance_policies());
        tracker.assure().set_hooks(dispatcher.clone());
        let shutdown = CancellationToken::new();
        let grace = Duration::from_secs(cfg.server.shutdown_grace_secs);
        let mut carriers = carriers(cfg, &opened, &dispatcher, &tracker, grace, &shutdown)?;
        let shared: Vec<Arc<CarrierState>> = carriers.iter().map(|c| c.shared().clone()).collect();
        let summary = adopt(recovered, &tracker, &dispatcher, &shared, now);
        tracing::info!(
            requeued = summary.requeued,
            possibly_sent = summary.possibly_sent,
            awaiting_receipt = summary.awaiting_receipt,
            expired = summary.expired,
            receipts = summary.receipts,
            receipts_possibly_redelivered = summary.receipts_possibly_redelivered,
            "recovered state of the previous run"
        );
        for c in &mut carriers {
            c.start();
        }
        otpgw_dispatch::assurance::spawn(
            tracker.clone(),
            dispatcher.clone(),
            Arc::new(SystemClock),
            shutdown.child_token(),
        );
        let acceptor = Arc::new(Acceptor::new(
            Brands::new(cfg.brand_configs()),
            dispatcher.clone(),
            tracker.clone(),
            IdGen::starting_at(opened.id_start),
            IdCipher::new(opened.id_key),
        ));
        let doors = open_doors(cfg, &acceptor, &tracker, &shutdown).await?;
        // Several nodes on one store: receipts between nodes, and dead nodes' work.
        otpgw_carrier::foreign::spawn(&**tracker.store(), shared.clone(), shutdown.child_token());
        otpgw_core::handover::spawn(tracker.clone(), shutdown.child_token());
        crate::sharing::spawn_claims(
            tracker.clone(),
            dispatcher.clone(),
            shared.clone(),
            cfg.redis_config().lease,
            shutdown.child_token(),
        );
        let audit = open_audit(cfg)?;
        let ops_addr = if cfg.ops.enabled {
            let readiness = Arc::new(GatewayReadiness {
                store: tracker.store().clone(),
                carriers: shared.clone(),
                routes: cfg.route_lists(),
                tracker: tracker.clone(),
                dispatcher: dispatcher.clone(),
                certs: crate::series::cert_expiries(cfg),
            });
            crate::series::cert_gauges(&readiness.certs);
            let admin = admin_api(
                cfg,
                audit.clone(),
                Arc::new(GatewayAdmin {
                    carriers: shared.clone(),
                    dispatcher: dispatcher.clone(),
                    tracker: tracker.clone(),
                    smpp: doors.smpp.clone(),
                    verifier: doors.verifier.clone(),
                }),
            )?;
            let listen = cfg.ops.listen;
            Some(
                crate::ops::serve(listen, readiness, admin, shutdown.child_token())
                    .await
                    .map_err(|source| StartError::Listen {
                        what: "ops",
                        addr: listen,
                        source,
                    })?,
            )
        } else {
            None
        };
        tracing::info!(brand_addr = %doors.brand_addr, tls_addr = ?doors.tls_addr, carriers = carriers.len(), "otpgw started");
        let gw = Self {
            brand_addr: doors.brand_addr,
            tls_addr: doors.tls_addr,
            shutdown,
            server: doors.server,
            carriers,
            tracker,
            dispatcher,
            acceptor,
            memory: opened.memory,
            embedded: opened.embedded,
            grace,
            ops_addr,
            http_addr: doors.http_addr,
            current: parking_lot::Mutex::new(cfg.clone()),
            audit,
        };
        Ok((gw, summary))
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

/// The dispatcher the configuration describes.
fn dispatcher(cfg: &Config) -> Dispatcher {
    let names: Vec<String> = cfg.carriers.iter().map(|c| c.name.clone()).collect();
    let d = Dispatcher::new(cfg.routes(), &names, cfg.queue.capacity);
    d.set_refuse_after_down(cfg.queue.refuse_after_down_ms);
    d.set_quality(cfg.quality.config(), cfg.quality.explore);
    d
}

/// The configured carriers, built but not started.
fn carriers(
    cfg: &Config,
    opened: &crate::stores::Opened,
    dispatcher: &Arc<Dispatcher>,
    tracker: &Arc<Tracker>,
    grace: Duration,
    shutdown: &CancellationToken,
) -> Result<Vec<Carrier>, StartError> {
    let mut carriers = Vec::new();
    for mut cc in cfg.carrier_configs() {
        cc.drain_grace = grace;
        cc.shared_limit = opened.shared_limit.clone();
        if cc.max_binds_total.is_some() {
            cc.bind_slots = opened.bind_slots.clone();
        }
        let c = Carrier::new(
            cc,
            dispatcher.clone(),
            tracker.clone(),
            shutdown.child_token(),
        )
        .map_err(|e| StartError::Part {
            what: "a carrier",
            reason: e.to_string(),
        })?;
        carriers.push(c);
    }
    Ok(carriers)
}

/// The doors: the SMPP listeners, the webhook sender, the HTTP API.
async fn open_doors(
    cfg: &Config,
    acceptor: &Arc<Acceptor>,
    tracker: &Arc<Tracker>,
    shutdown: &CancellationToken,
) -> Result<Doors, StartError> {
    let listen = cfg.server.listen;
    let server = Server::bind(
        cfg.server_config(),
        acceptor.clone(),
        tracker.clone(),
        shutdown.child_token(),
    )
    .await
    .map_err(|source| StartError::Listen {
        what: "brands (SMPP)",
        addr: listen,
        source,
    })?;
    let tls_addr = server.tls_addr();
    let brand_addr = server.local_addr().or(tls_addr).ok_or(StartError::Part {
        what: "the SMPP door",
        reason: "no brand listener is configured".into(),
    })?;
    let smpp = server.context();
    let server = tokio::spawn(server.run());
    // Webhooks owed (this run's, and a previous run's) go out whether or not the
    // HTTP listener runs.
    let hooks = cfg.http_config().map(|h| h.webhooks).unwrap_or_default();
    otpgw_http::webhook::spawn(
        tracker.outbox().clone(),
        tracker.store().clone(),
        acceptor.brands().clone(),
        acceptor.ids().clone(),
        hooks,
        shutdown.child_token(),
    )
    .map_err(|e| StartError::Part {
        what: "the webhook sender",
        reason: e.to_string(),
    })?;
    let verifier = cfg
        .verify_config()
        .map(|v| Arc::new(otpgw_verify::Verifier::new(v, acceptor.clone())));
    let http_addr = match cfg.http_config() {
        Some(h) => {
            let listen = h.listen;
            if verifier.is_none() {
                tracing::warn!("no [verify] section: the Verify API answers 503");
            }
            let r = otpgw_http::start(
                h,
                acceptor.clone(),
                verifier.clone(),
                shutdown.child_token(),
            )
            .await
            .map_err(|source| StartError::Listen {
                what: "the HTTP API",
                addr: listen,
                source,
            })?;
            Some(r.addr)
        }
        None => None,
    };
    Ok(Doors {
        server,
        brand_addr,
        tls_addr,
        http_addr,
        smpp,
        verifier,
    })
}

/// The audit log (`[audit]`), its chain checked.
pub(crate) fn open_audit(cfg: &Config) -> Result<Option<Arc<crate::audit::Audit>>, StartError> {
    let Some(a) = &cfg.audit else {
        return Ok(None);
    };
    crate::audit::Audit::open(&a.path)
        .map(|l| Some(Arc::new(l)))
        .map_err(|e| StartError::Part {
            what: "the audit log",
            reason: e.to_string(),
        })
}

/// The admin API's keys (`[[ops.admin]]`, and the deprecated `ops.admin_token` as
/// an `operate` token named `admin`) and audit log; `None` without any key.
fn admin_api(
    cfg: &Config,
    audit: Option<Arc<crate::audit::Audit>>,
    admin: Arc<dyn crate::ops::Admin>,
) -> Result<Option<crate::ops::AdminApi>, crate::error::StartError> {
    use crate::config::AdminRole;
    let mut keys = Vec::new();
    if let Some(t) = cfg.ops.admin_token().ok().flatten() {
        tracing::warn!(
            "ops.admin_token is deprecated: use [[ops.admin]] entries (name, role, token_hash)"
        );
        keys.push(crate::ops::AdminKey {
            name: "admin".into(),
            role: AdminRole::Operate,
            digest: otpgw_http::auth::digest(&t),
        });
    }
    for a in &cfg.ops.admin {
        let hex = a.token_hash.trim_start_matches("sha256:");
        let mut digest = [0u8; 32];
        for (i, d) in digest.iter_mut().enumerate() {
            *d = u8::from_str_radix(hex.get(2 * i..2 * i + 2).unwrap_or("00"), 16).unwrap_or(0);
        }
        keys.push(crate::ops::AdminKey {
            name: a.name.clone(),
            role: a.role,
            digest,
        });
    }
    if keys.is_empty() {
        return Ok(None);
    }
    Ok(Some(crate::ops::AdminApi { admin, keys, audit }))
}
