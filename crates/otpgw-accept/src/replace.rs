//! Replacing a message the gateway still holds: `replace_sm` (new text, validity and
//! receipt request for one id) and `submit_sm` with `replace_if_present_flag` (the
//! whole new submission takes the place of a queued one with the same source,
//! destination and service_type).
//!
//! A replacement keeps the message's id, destination, class and route, and takes the
//! place of the queued message atomically: the old one is claimed as cancelled (a
//! carrier bind that takes it later skips it), the new one is written to the store
//! under the same id (the record is overwritten; in Redis the old stream entry is
//! removed by the same script that adds the new one), tracked and queued. A message
//! a carrier bind took already cannot be replaced: ESME_RREPLACEFAIL. If the store
//! refuses the new record, the old message is queued again as it was (a fresh copy,
//! so the cancelled one a bind may hold stays skipped) and the brand gets the
//! store's refusal.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use otpgw_core::status::MessageStatus;
use otpgw_core::{Body, Message, MsgId};
use otpgw_dispatch::DispatchError;
use otpgw_proto::pdu::SubmitFields;
use otpgw_proto::replace::Replacement;

use crate::acceptor::Acceptor;
use crate::brands::BrandConfig;
use crate::errors::AcceptError;
use crate::validate::validate;

impl Acceptor {
    /// `replace_sm`: the message `id` of `brand` gets the text, validity and receipt
    /// request of `r`, if it is still queued here.
    pub async fn replace(
        &self,
        brand: &BrandConfig,
        id: MsgId,
        r: Replacement,
        origin: u64,
        now_ms: u64,
    ) -> Result<MsgId, AcceptError> {
        let old = self
            .tracker
            .get(id)
            .filter(|m| m.brand == brand.system_id)
            .ok_or(AcceptError::ReplaceFailed)?;
        let Body::Sms(mut sms) = old.body.clone();
        if !r.source.is_empty() && r.source != sms.source.addr {
            return Err(AcceptError::ReplaceFailed);
        }
        sms.short_message = r.short_message;
        sms.message_payload = r.message_payload;
        sms.validity_period = r.validity_period;
        sms.schedule_delivery_time = r.schedule_delivery_time;
        sms.registered_delivery = r.registered_delivery;
        self.replace_with(brand, old, Body::Sms(sms), origin, now_ms)
            .await
    }

    /// `submit_sm` with `replace_if_present_flag` set: the submission replaces a
    /// queued message of `brand` with the same source, destination and service_type
    /// (the most recent one); with none in flight it is a new message. One in
    /// flight but at a carrier already: ESME_RREPLACEFAIL.
    pub async fn accept_replacing(
        &self,
        brand: &BrandConfig,
        fields: SubmitFields,
        origin: u64,
        now_ms: u64,
    ) -> Result<MsgId, AcceptError> {
        let same = |m: &Message| {
            let Body::Sms(b) = &m.body;
            m.brand == brand.system_id
                && m.to.phone().is_some_and(|a| a.addr == fields.dest.addr)
                && b.source.addr == fields.source.addr
                && b.service_type == fields.service_type
        };
        let mut found = self.tracker.matching(same);
        found.retain(|m| !m.is_cancelled());
        if found.is_empty() {
            return self.accept(brand, fields, origin, now_ms).await;
        }
        found.sort_by_key(|m| m.accepted_ms);
        let Some(old) = found.into_iter().rev().find(|m| !m.progress.lock().claimed) else {
            return Err(AcceptError::ReplaceFailed);
        };
        let (_, body) = otpgw_core::SmsBody::split(fields);
        self.replace_with(brand, old, body, origin, now_ms).await
    }

    /// Put a message with `body` in the place of `old` (see the module docs).
    async fn replace_with(
        &self,
        brand: &BrandConfig,
        old: Arc<Message>,
        body: Body,
        origin: u64,
        now_ms: u64,
    ) -> Result<MsgId, AcceptError> {
        if self.closing.load(Ordering::Relaxed) {
            return Err(AcceptError::ShuttingDown);
        }
        let lifetime = match old.class {
            otpgw_core::Class::Otp => brand.otp_lifetime,
            otpgw_core::Class::Bulk => brand.bulk_lifetime,
        };
        let deadline_ms = validate(&old.to, &body, now_ms, lifetime.as_millis() as u64)?;
        let Body::Sms(sms) = &body;
        if !brand.limits.source_allowed(&sms.source.addr) {
            return Err(AcceptError::SourceNotAllowed);
        }
        let queue = self
            .dispatcher
            .check(&brand.system_id, old.to.key(), now_ms)
            .map_err(|e| match e {
                DispatchError::NoRoute => AcceptError::NoRoute,
                DispatchError::QueueFull(_) => AcceptError::QueueFull,
                DispatchError::NoCarrier(_) => AcceptError::CarrierDown,
            })?;
        if !old.claim_cancel() {
            return Err(AcceptError::ReplaceFailed);
        }
        let fresh = |body: Body, deadline_ms: u64, origin: u64| {
            Arc::new(Message {
                id: old.id,
                brand: old.brand.clone(),
                to: old.to.clone(),
                body,
                class: old.class,
                accepted_ms: old.accepted_ms,
                deadline_ms,
                attempts: Default::default(),
                extra: old.extra.clone(),
                origin,
                progress: Default::default(),
                group: old.group,
            })
        };
        let msg = fresh(body, deadline_ms, origin);
        let store = self.tracker.store();
        if store.accept(&msg).await.is_err() {
            let again = fresh(old.body.clone(), old.deadline_ms, old.origin);
            self.tracker.insert(again.clone());
            self.dispatcher.enqueue(queue, again, now_ms);
            return Err(AcceptError::StoreUnavailable);
        }
        if store.is_shared() {
            store.record_status(&MessageStatus::in_flight(&msg));
        }
        self.tracker.insert(msg.clone());
        self.dispatcher.enqueue(queue, msg, now_ms);
        metrics::counter!("otpgw_messages_replaced_total").increment(1);
        Ok(old.id)
    }
}
