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
use otpgw_store::MemoryStore;

use crate::config::{Backend, Config};

/// A running gateway.
pub struct Gateway {
    brand_addr: SocketAddr,
    shutdown: CancellationToken,
    server: JoinHandle<()>,
    carriers: Vec<Carrier>,
    tracker: Arc<Tracker>,
    dispatcher: Arc<Dispatcher>,
    acceptor: Arc<Acceptor>,
    memory: Option<Arc<MemoryStore>>,
}

impl Gateway {
    /// Start everything the config describes. The brand listener is bound when this
    /// returns (port 0 in the config picks a free port: see [`Gateway::brand_addr`]).
    pub async fn start(cfg: &Config) -> anyhow::Result<Self> {
        let (store, memory): (Arc<dyn Store>, Option<Arc<MemoryStore>>) = match cfg.store.backend {
            Backend::Memory => {
                tracing::warn!(
                    "store backend is MEMORY: accepted messages and pending receipts are LOST on a crash or restart"
                );
                let m = Arc::new(MemoryStore::new());
                (m.clone(), Some(m))
            }
        };
        let outbox = Arc::new(Outbox::new(cfg.receipts.outbox_capacity));
        let tracker = Arc::new(Tracker::new(store, outbox));
        let names: Vec<String> = cfg.carriers.iter().map(|c| c.name.clone()).collect();
        let dispatcher = Arc::new(Dispatcher::new(cfg.routes(), &names, cfg.queue.capacity));
        let shutdown = CancellationToken::new();
        let mut carriers = Vec::new();
        for cc in cfg.carrier_configs() {
            let q = dispatcher.queue(&cc.name).context("carrier queue")?;
            carriers.push(Carrier::spawn(
                cc,
                q,
                tracker.clone(),
                shutdown.child_token(),
            ));
        }
        let acceptor = Arc::new(Acceptor::new(
            dispatcher.clone(),
            tracker.clone(),
            IdGen::starting_at(clock::now_us()),
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
        let brand_addr = server.local_addr()?;
        let server = tokio::spawn(server.run());
        tracing::info!(%brand_addr, carriers = carriers.len(), "otpgw started");
        Ok(Self {
            brand_addr,
            shutdown,
            server,
            carriers,
            tracker,
            dispatcher,
            acceptor,
            memory,
        })
    }

    /// Where brands connect.
    pub fn brand_addr(&self) -> SocketAddr {
        self.brand_addr
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

    /// Stop: refuse new messages, unbind brands and carriers, wait for tasks.
    pub async fn shutdown(self) {
        self.acceptor.close();
        self.shutdown.cancel();
        let _ = self.server.await;
        for c in self.carriers {
            c.join().await;
        }
    }
}
