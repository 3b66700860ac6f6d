//! Reload (SIGHUP): a new, already validated configuration applied without
//! dropping sessions.

use crate::config::Config;
use crate::gateway::Gateway;
use otpgw_accept::Brands;

/// Why a reload was refused (the old configuration stays).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("carriers were added or removed: that needs a restart")]
    CarriersChanged,
    #[error(transparent)]
    Routes(#[from] otpgw_dispatch::UnknownCarrier),
}

impl Gateway {
    /// Apply a new, already validated configuration without dropping sessions:
    /// brands (new binds use the new credentials), routes, and each carrier's window.
    /// Refused as a whole (the old configuration stays) when carriers were added or
    /// removed. Returns the changes that need a restart to take effect.
    pub fn reload(&self, new: &Config) -> Result<Vec<String>, ReloadError> {
        let r = self.apply(new);
        self.record("reload", if r.is_ok() { "ok" } else { "refused" });
        r
    }

    /// Record a change made outside the admin API (a reload by SIGHUP, or one
    /// refused because the new file is invalid) in the audit log, if there is one.
    pub fn record(&self, action: &str, result: &str) {
        if let Some(a) = &self.audit
            && let Err(e) = a.record(crate::audit::Event {
                actor: "signal SIGHUP",
                action,
                target: "",
                result,
            })
        {
            tracing::error!(error = %e, "audit log write failed");
        }
    }

    fn apply(&self, new: &Config) -> Result<Vec<String>, ReloadError> {
        let mut cur = self.current.lock();
        let names = |c: &Config| {
            let mut v: Vec<String> = c.carriers.iter().map(|c| c.name.clone()).collect();
            v.sort();
            v
        };
        if names(&cur) != names(new) {
            return Err(ReloadError::CarriersChanged);
        }
        self.dispatcher.set_routes(new.routes())?;
        self.dispatcher
            .set_refuse_after_down(new.queue.refuse_after_down_ms);
        self.dispatcher.set_explore(new.quality.explore);
        self.tracker.assure().set_policies(new.assurance_policies());
        self.acceptor.set_brands(Brands::new(new.brand_configs()));
        self.tracker
            .store()
            .set_status_retention(new.status_retention());
        let mut restart = Vec::new();
        for (c, old) in new.carriers.iter().zip(cur.carriers.iter()) {
            if let Some(k) = self.carriers.iter().find(|k| k.name() == c.name) {
                k.shared().set_window(c.window);
                k.shared()
                    .limiter
                    .lock()
                    .set_cap(c.rate_limit.map(f64::from), otpgw_core::clock::now_ms());
            }
            if c.address != old.address
                || c.system_id != old.system_id
                || c.password() != old.password()
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
            || new.store.redis_sentinels != cur.store.redis_sentinels
            || new.store.redis_cluster != cur.store.redis_cluster
            || new.store.redis_partitions != cur.store.redis_partitions
            || new.store.redis_master_name != cur.store.redis_master_name
            || new.store.redis_prefix != cur.store.redis_prefix
            || new.store.node_id != cur.store.node_id
            || new.store.share_carrier_limits != cur.store.share_carrier_limits
        {
            restart.push("store".into());
        }
        if new.ops.listen != cur.ops.listen
            || new.ops.admin_token() != cur.ops.admin_token()
            || new.ops.admin != cur.ops.admin
            || new.audit != cur.audit
        {
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
}
