//! A brand's bind on its session: the lockout of failing accounts and addresses,
//! the password check (two at a time, a known account or not), the allow-list and
//! the bind limit, then the bind state and the brand's outbox.

use otpgw_accept::auth;
use otpgw_core::clock::now_ms;
use otpgw_proto::pdu;
use otpgw_proto::rusmpp::Command;
use otpgw_proto::session::BindState;
use otpgw_proto::status::{self, cmd};

use super::{Conn, End};

impl Conn {
    pub(super) async fn on_bind(&mut self, c: &Command, id: u32, seq: u32) -> Option<End> {
        let Some(req) = pdu::bind_request(c) else {
            return self
                .bind_failed(id, seq, status::ESME_RBINDFAIL, "malformed")
                .await;
        };
        let ip = self.peer.ip();
        let sys = req.params.system_id.as_str();
        let locked = self.ctx.lockout.lock().locked_for(Some(sys), ip, now_ms());
        if let Some(left) = locked {
            metrics::counter!("otpgw_brand_binds_locked_out_total").increment(1);
            tracing::info!(peer = %self.peer, seconds_left = left.div_ceil(1000), "bind refused: locked out");
            return self
                .bind_failed(id, seq, status::ESME_RBINDFAIL, "locked out")
                .await;
        }
        let brand = self.ctx.acceptor.brands().read().get(sys);
        // A known account may be tried from this address; unknown names and
        // addresses outside the allow-list count against the address alone.
        let (account, hash) = match &brand {
            Some(b) if b.allows(ip) => (Some(sys), Some(b.password_hash.clone())),
            _ => (None, None),
        };
        // The hash check costs tens of ms of CPU: on the blocking pool, a few at a
        // time; the same work for an unknown account (no timing oracle).
        let password = req.params.password.clone();
        let ok = match self.ctx.verify_slots.acquire().await {
            Ok(_permit) => tokio::task::spawn_blocking(move || match hash {
                Some(h) => auth::verify_password(&h, &password),
                None => {
                    auth::dummy_verify(&password);
                    false
                }
            })
            .await
            .unwrap_or(false),
            Err(_) => false,
        };
        let brand = match brand {
            Some(b) if ok => b,
            _ => {
                if let Some(ms) = self.ctx.lockout.lock().failure(account, ip, now_ms()) {
                    metrics::counter!("otpgw_auth_lockouts_total", "door" => "smpp").increment(1);
                    tracing::warn!(peer = %self.peer, seconds = ms.div_ceil(1000), "failed binds: address locked for this account");
                }
                let (code, why) = match &brand {
                    None => (status::ESME_RINVSYSID, "unknown system_id"),
                    Some(b) if !b.allows(ip) => (status::ESME_RBINDFAIL, "address not allowed"),
                    Some(_) => (status::ESME_RINVPASWD, "wrong password"),
                };
                return self.bind_failed(id, seq, code, why).await;
            }
        };
        self.ctx.lockout.lock().success(sys, ip);
        // Count the bind against the brand's limit in one step (no race between binds).
        let over = {
            let mut n = self
                .ctx
                .sessions
                .entry(brand.system_id.clone())
                .or_default();
            if *n >= brand.max_binds {
                true
            } else {
                *n += 1;
                false
            }
        };
        if over {
            metrics::counter!("otpgw_brand_binds_over_limit_total", "brand" => brand.system_id.to_string())
                .increment(1);
            return self
                .bind_failed(id, seq, status::ESME_RBINDFAIL, "too many binds")
                .await;
        }
        let state = BindState::from_bind_command(id).unwrap_or(BindState::Transceiver);
        self.session.set_state(state);
        let outbox = self.ctx.tracker.outbox().brand(&brand.system_id);
        self.sid = super::NEXT_SESSION.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        outbox.register(self.sid, self.peer.ip(), state.can_deliver());
        self.brand_outbox = Some(outbox.clone());
        if state.can_deliver() {
            self.outbox = Some(outbox);
            self.ctx
                .tracker
                .store()
                .brand_receiver(&brand.system_id, true);
        }
        metrics::gauge!("otpgw_brand_sessions", "brand" => brand.system_id.to_string())
            .increment(1.0);
        tracing::info!(brand = %brand.system_id, peer = %self.peer, mode = ?state, "brand bound");
        tracing::Span::current().record("brand", &*brand.system_id);
        self.brand = Some(brand);
        self.send(pdu::bind_resp(id, seq, "otpgw")).await
    }

    /// Refuse a bind: ESME_RBINDFAIL, or `specific` when the config asks for
    /// specific codes. The reason goes to the log, never to the peer.
    pub(super) async fn bind_failed(
        &mut self,
        id: u32,
        seq: u32,
        specific: u32,
        reason: &str,
    ) -> Option<End> {
        metrics::counter!("otpgw_brand_bind_failures_total").increment(1);
        tracing::info!(peer = %self.peer, reason, "bind refused");
        let st = if self.ctx.cfg.specific_bind_errors {
            specific
        } else {
            status::ESME_RBINDFAIL
        };
        self.send(pdu::header_only(cmd::response_of(id), st, seq))
            .await
    }
}
