//! [`Context`]: what every session of the SMPP door shares: its settings, the
//! accept layer, session counts per brand, connection counts per address, and the
//! lockout of failing binds.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use otpgw_accept::Acceptor;
use otpgw_core::tracker::Tracker;
use tokio_util::sync::CancellationToken;

use crate::config::ServerConfig;

/// Everything a brand session needs.
pub struct Context {
    pub cfg: ServerConfig,
    /// Bound sessions per brand.
    pub sessions: dashmap::DashMap<Arc<str>, usize>,
    pub acceptor: Arc<Acceptor>,
    pub tracker: Arc<Tracker>,
    pub shutdown: CancellationToken,
    pub connections: AtomicUsize,
    /// Failed binds per account and per IP.
    pub lockout: parking_lot::Mutex<otpgw_accept::auth::Lockout>,
    /// Password verifications running at once.
    pub verify_slots: tokio::sync::Semaphore,
    /// Per source IP: connections, and those not bound.
    pub per_ip: dashmap::DashMap<std::net::IpAddr, (usize, usize)>,
}

impl Context {
    /// Count a new connection from `ip`, or refuse it (over a per-IP limit).
    pub(crate) fn admit_ip(&self, ip: std::net::IpAddr) -> bool {
        let mut e = self.per_ip.entry(ip).or_insert((0, 0));
        if e.0 >= self.cfg.max_connections_per_ip || e.1 >= self.cfg.max_unbound_per_ip {
            return false;
        }
        e.0 += 1;
        e.1 += 1;
        true
    }

    /// A connection from `ip` bound.
    pub(crate) fn ip_bound(&self, ip: std::net::IpAddr) {
        if let Some(mut e) = self.per_ip.get_mut(&ip) {
            e.1 = e.1.saturating_sub(1);
        }
    }

    /// A connection from `ip` ended (`bound`: it had bound and stayed counted so).
    pub(crate) fn ip_closed(&self, ip: std::net::IpAddr, bound: bool) {
        let gone = {
            let Some(mut e) = self.per_ip.get_mut(&ip) else {
                return;
            };
            e.0 = e.0.saturating_sub(1);
            if !bound {
                e.1 = e.1.saturating_sub(1);
            }
            e.0 == 0
        };
        if gone {
            self.per_ip.remove_if(&ip, |_, e| e.0 == 0);
        }
    }
}
