//! A brand session's submissions and operations on messages it submitted,
//! answered from the gateway's own records: `submit_sm`, `data_sm`,
//! `submit_multi`, `query_sm`, `cancel_sm`, `replace_sm` (docs/smpp-status.md).

use std::time::Instant;

use otpgw_core::clock::now_ms;
use otpgw_proto::pdu::{self, SubmitFields};
use otpgw_proto::rusmpp::{Command, Pdu};
use otpgw_proto::status::{self, cmd};

use super::{Conn, End, Req};

impl Conn {
    /// A request about messages (admitted for this bind): decode it and answer.
    pub(super) async fn on_op(&mut self, c: &Command, id: u32, seq: u32) -> Option<End> {
        let req = Req {
            seq,
            resp: cmd::response_of(id),
        };
        match c.pdu() {
            Some(Pdu::SubmitSm(s)) => {
                let replacing = u8::from(s.replace_if_present_flag) == 1;
                self.on_submit(SubmitFields::from_submit_sm(s), req, replacing)
                    .await
            }
            Some(Pdu::DataSm(d)) => {
                self.on_submit(SubmitFields::from_data_sm(d), req, false)
                    .await
            }
            Some(Pdu::CancelSm(q)) => {
                let what = otpgw_proto::query::cancel_sm_what(q);
                self.on_cancel(what, seq).await
            }
            Some(Pdu::QuerySm(q)) => {
                let id = otpgw_proto::query::query_sm_id(q).to_string();
                self.on_query(id, seq).await
            }
            Some(Pdu::SubmitMulti(m)) => {
                let (fields, dests) = otpgw_proto::submit_multi::submit_multi_parts(m);
                self.on_submit_multi(fields, dests, req).await
            }
            Some(Pdu::ReplaceSm(r)) => {
                let what = otpgw_proto::replace::replace_sm_what(r);
                self.on_replace(what, req).await
            }
            _ => {
                self.send(pdu::header_only(req.resp, status::ESME_RSYSERR, seq))
                    .await
            }
        }
    }

    /// Replace a queued message of this brand (`replace_sm`): answered once the new
    /// text is stored, like a submission.
    async fn on_replace(
        &mut self,
        what: otpgw_proto::replace::Replacement,
        req: Req,
    ) -> Option<End> {
        let Some(brand) = self.brand.clone() else {
            return self
                .send(pdu::header_only(req.resp, status::ESME_RINVBNDSTS, req.seq))
                .await;
        };
        let Some(id) = self.ctx.acceptor.ids().parse(&what.message_id) else {
            return self
                .send(pdu::header_only(
                    req.resp,
                    status::ESME_RREPLACEFAIL,
                    req.seq,
                ))
                .await;
        };
        let started = Instant::now();
        let acceptor = self.ctx.acceptor.clone();
        let origin = self.origin(&brand);
        self.await_store(Box::pin(async move {
            let res = acceptor.replace(&brand, id, what, origin, now_ms()).await;
            (req, res, started, None)
        }))
        .await
    }

    /// One text to several numbers (`submit_multi`): answered once every number's
    /// message is stored (or refused), with the submission's id and the numbers
    /// refused.
    async fn on_submit_multi(
        &mut self,
        fields: SubmitFields,
        dests: Vec<otpgw_proto::submit_multi::Dest>,
        req: Req,
    ) -> Option<End> {
        let Some(brand) = self.brand.clone() else {
            return self
                .send(pdu::header_only(req.resp, status::ESME_RINVBNDSTS, req.seq))
                .await;
        };
        if self.must_throttle() {
            return self
                .send(super::refusal(
                    &brand,
                    otpgw_accept::AcceptError::Throttled,
                    req,
                ))
                .await;
        }
        let started = Instant::now();
        let acceptor = self.ctx.acceptor.clone();
        let origin = self.origin(&brand);
        self.await_store(Box::pin(async move {
            let m = acceptor
                .accept_multi(&brand, fields, dests, origin, now_ms())
                .await;
            (req, m.id.clone(), started, Some(Box::new(m)))
        }))
        .await
    }

    /// Answer a `query_sm` from the gateway's own records: the state, final date and
    /// error code of a message of this brand; ESME_RQUERYFAIL for an id it does not
    /// know or of another brand.
    pub(super) async fn on_query(&mut self, public_id: String, seq: u32) -> Option<End> {
        let fail = pdu::header_only(cmd::QUERY_SM_RESP, status::ESME_RQUERYFAIL, seq);
        let Some(brand) = self.brand.clone() else {
            return self.send(fail).await;
        };
        let Some(id) = self.ctx.acceptor.ids().parse(&public_id) else {
            return self.send(fail).await;
        };
        let st = match self.ctx.acceptor.status(id).await {
            Ok(Some(s)) if s.brand == brand.system_id => s,
            _ => return self.send(fail).await,
        };
        let (state, final_ms) = match st.stage {
            otpgw_core::status::Stage::Done(d) => (d.tlv(), st.done_ms),
            _ => (otpgw_proto::receipt::DeliveryState::Enroute.tlv(), 0),
        };
        let answer = otpgw_proto::query::Answer {
            message_id: public_id,
            state,
            final_ms,
            error_code: otpgw_proto::query::error_octet(&st.err),
        };
        self.send(otpgw_proto::query::query_sm_resp(seq, &answer))
            .await
    }

    /// Cancel messages of this brand still queued (`cancel_sm`): by id, or every one
    /// to a destination (and source and service type when given). They are never
    /// sent and end DELETED (with a receipt when the brand asked for one). None
    /// cancelled (unknown, another brand's, or already at a carrier): ESME_RCANCELFAIL.
    pub(super) async fn on_cancel(
        &mut self,
        what: otpgw_proto::query::CancelWhat,
        seq: u32,
    ) -> Option<End> {
        let Some(brand) = self.brand.clone() else {
            return self
                .send(pdu::header_only(
                    cmd::CANCEL_SM_RESP,
                    status::ESME_RINVBNDSTS,
                    seq,
                ))
                .await;
        };
        let tracker = &self.ctx.tracker;
        let mine = |m: &otpgw_core::Message| m.brand == brand.system_id;
        let targets = if !what.message_id.is_empty() {
            let found = self
                .ctx
                .acceptor
                .ids()
                .parse(&what.message_id)
                .and_then(|id| tracker.get(id))
                .filter(|m| mine(m));
            match found {
                // A submit_multi's id: every number of it still queued.
                Some(m) if m.group == Some(m.id) => {
                    tracker.matching(|x| x.group == Some(m.id) && mine(x))
                }
                other => other.into_iter().collect(),
            }
        } else if !what.dest.is_empty() {
            tracker.matching(|m| {
                let otpgw_core::Body::Sms(b) = &m.body;
                mine(m)
                    && m.to.phone().is_some_and(|a| a.addr == what.dest)
                    && (what.source.is_empty() || b.source.addr == what.source)
                    && (what.service_type.is_empty() || b.service_type == what.service_type)
            })
        } else {
            Vec::new()
        };
        let now = now_ms();
        let mut cancelled = 0u64;
        for m in targets {
            if m.claim_cancel() {
                let _ = tracker.finish(
                    m.id,
                    otpgw_proto::receipt::DeliveryState::Deleted,
                    None,
                    now,
                );
                cancelled += 1;
            }
        }
        metrics::counter!("otpgw_messages_cancelled_total").increment(cancelled);
        let st = if cancelled > 0 {
            status::ESME_ROK
        } else {
            status::ESME_RCANCELFAIL
        };
        self.send(pdu::header_only(cmd::CANCEL_SM_RESP, st, seq))
            .await
    }
}
