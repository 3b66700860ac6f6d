//! Acceptance of a brand's message: validate, route, store, track, queue.
//!
//! The order matters: the queue's room is checked before the store is asked (a full
//! queue answers ESME_RMSGQFUL at once), the message is tracked before it is queued
//! (so its receipt can always find it), and the caller answers `submit_sm_resp`
//! ESME_ROK only after [`Acceptor::accept`] returned, that is after the store said the
//! message is safe. The brand's own limits (sender ids, destination prefixes,
//! messages per destination number, messages per second) are checked right after
//! validation.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use otpgw_core::message::IdGen;
use otpgw_core::tracker::Tracker;
use otpgw_core::{Class, Message, MsgId};
use otpgw_dispatch::{DispatchError, Dispatcher};
use otpgw_proto::pdu::SubmitFields;

use crate::brands::BrandConfig;
use crate::errors::AcceptError;
use crate::validate::validate;

/// See the module docs.
pub struct Acceptor {
    dispatcher: Arc<Dispatcher>,
    tracker: Arc<Tracker>,
    ids: IdGen,
    closing: AtomicBool,
    /// Messages per destination number per brand (SMS pumping defence).
    destinations: parking_lot::Mutex<crate::limits::DestinationLimiter>,
}

impl Acceptor {
    /// An acceptor handing out ids from `ids`.
    pub fn new(dispatcher: Arc<Dispatcher>, tracker: Arc<Tracker>, ids: IdGen) -> Self {
        Self {
            dispatcher,
            tracker,
            ids,
            closing: AtomicBool::new(false),
            destinations: parking_lot::Mutex::new(crate::limits::DestinationLimiter::new(
                1_000_000,
            )),
        }
    }

    /// Refuse new messages from now on (shutdown).
    pub fn close(&self) {
        self.closing.store(true, Ordering::Relaxed);
    }

    /// Accept a message from `brand`, or say why not.
    pub async fn accept(
        &self,
        brand: &BrandConfig,
        fields: SubmitFields,
        now_ms: u64,
    ) -> Result<MsgId, AcceptError> {
        if self.closing.load(Ordering::Relaxed) {
            return Err(AcceptError::ShuttingDown);
        }
        let class = match fields.priority_flag {
            0 => brand.default_class,
            p => Class::from_priority_flag(p),
        };
        let lifetime = match class {
            Class::Otp => brand.otp_lifetime,
            Class::Bulk => brand.bulk_lifetime,
        };
        let deadline_ms = validate(&fields, now_ms, lifetime.as_millis() as u64)?;
        let limits = &brand.limits;
        if !limits.source_allowed(&fields.source.addr) {
            return Err(AcceptError::SourceNotAllowed);
        }
        if !limits.destination_allowed(&fields.dest.addr) {
            return Err(AcceptError::DestinationNotAllowed);
        }
        if let Some((max, window)) = brand.per_destination
            && !self.destinations.lock().admit(
                &brand.system_id,
                &fields.dest.addr,
                max,
                window,
                std::time::Instant::now(),
            )
        {
            return Err(AcceptError::DestinationOverLimit);
        }
        if !limits.take_now() {
            return Err(AcceptError::BrandRate);
        }
        let queue = self
            .dispatcher
            .check(&brand.system_id, &fields.dest.addr, now_ms)
            .map_err(|e| match e {
                DispatchError::NoRoute => AcceptError::NoRoute,
                DispatchError::QueueFull(_) => AcceptError::QueueFull,
                DispatchError::NoCarrier(_) => AcceptError::CarrierDown,
            })?;
        let msg = Arc::new(Message {
            id: self.ids.next(),
            brand: brand.system_id.clone(),
            fields,
            class,
            accepted_ms: now_ms,
            deadline_ms,
            attempts: Default::default(),
        });
        self.tracker
            .store()
            .accept(&msg)
            .await
            .map_err(|_| AcceptError::StoreUnavailable)?;
        self.tracker.insert(msg.clone());
        let id = msg.id;
        self.dispatcher.enqueue(queue, msg, now_ms);
        Ok(id)
    }
}
