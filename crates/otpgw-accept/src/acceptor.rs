//! Acceptance of a brand's message: validate, route, store, track, queue. The one
//! acceptor of every door: `submit_sm` from the SMPP server and messages from the
//! HTTP API (with their extras and idempotency key) take the same path.
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

use otpgw_core::message::{Extra, IdGen};
use otpgw_core::public_id::IdCipher;
use otpgw_core::status::MessageStatus;
use otpgw_core::store::Once;
use otpgw_core::tracker::Tracker;
use otpgw_core::{Body, Class, Destination, Message, MsgId, SmsBody};
use otpgw_dispatch::{DispatchError, Dispatcher};
use otpgw_proto::pdu::SubmitFields;

use crate::brands::{BrandConfig, Brands};
use crate::errors::AcceptError;
use crate::validate::validate;

/// A message as a door hands it to the acceptor.
#[derive(Debug, Default)]
pub struct Submission {
    /// Where it goes.
    pub to: Destination,
    /// What it carries.
    pub body: Body,
    /// The class asked for explicitly (HTTP `class`); `None`: from the SMS's
    /// `priority_flag` and the brand's default.
    pub class: Option<Class>,
    pub extra: Option<Arc<Extra>>,
    /// An id minted beforehand with [`Acceptor::mint`] (a verification records it
    /// before its message is accepted); `None`: minted now.
    pub id: Option<MsgId>,
    /// An idempotency key: a second submission with it within `once_ttl_ms` stores
    /// nothing and gets the first one's id. With it, the fingerprint of the request
    /// (so a different request with the same key can be told apart).
    pub once: Option<(String, Vec<u8>)>,
    /// The SMPP session that submitted it (0: none): its receipt goes back to it.
    pub origin: u64,
    /// One destination of a `submit_multi`: the submission's id (see
    /// [`Message::group`]).
    pub group: Option<MsgId>,
}

/// How long an idempotency key holds (24 hours).
pub const ONCE_TTL_MS: u64 = 86_400_000;

/// A submission the acceptor took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub id: MsgId,
    /// The idempotency key was used before: `id` is the first submission's, and
    /// this is its fingerprint. Nothing new was stored or queued.
    pub duplicate: Option<Vec<u8>>,
}

/// The store key of a brand's idempotency key.
pub fn once_key(brand: &str, key: &str) -> String {
    format!("idem:{brand}:{key}")
}

/// The value stored under an idempotency key: the message id, then the fingerprint.
pub fn once_value(id: MsgId, fingerprint: &[u8]) -> Vec<u8> {
    let mut v = id.0.to_be_bytes().to_vec();
    v.extend_from_slice(fingerprint);
    v
}

/// (message id, fingerprint) of a stored idempotency value.
pub fn parse_once_value(v: &[u8]) -> Option<(MsgId, &[u8])> {
    let (id, fp) = v.split_first_chunk::<8>()?;
    Some((MsgId(u64::from_be_bytes(*id)), fp))
}

/// See the module docs.
pub struct Acceptor {
    /// The brands every door authenticates against (reloaded on SIGHUP; a session
    /// already bound keeps its brand's settings).
    pub(crate) brands: Arc<parking_lot::RwLock<Brands>>,
    pub(crate) dispatcher: Arc<Dispatcher>,
    pub(crate) tracker: Arc<Tracker>,
    pub(crate) ids: IdGen,
    /// The ids brands see.
    pub(crate) cipher: IdCipher,
    pub(crate) closing: AtomicBool,
    /// Messages per destination number per brand (SMS pumping defence).
    pub(crate) destinations: parking_lot::Mutex<crate::limits::DestinationLimiter>,
}

impl Acceptor {
    /// An acceptor for `brands`, handing out ids from `ids`, shown to brands
    /// through `cipher`.
    pub fn new(
        brands: Brands,
        dispatcher: Arc<Dispatcher>,
        tracker: Arc<Tracker>,
        ids: IdGen,
        cipher: IdCipher,
    ) -> Self {
        Self {
            brands: Arc::new(parking_lot::RwLock::new(brands)),
            dispatcher,
            tracker,
            ids,
            cipher,
            closing: AtomicBool::new(false),
            destinations: parking_lot::Mutex::new(crate::limits::DestinationLimiter::new(
                1_000_000,
            )),
        }
    }

    /// The brands (the doors look them up here).
    pub fn brands(&self) -> &Arc<parking_lot::RwLock<Brands>> {
        &self.brands
    }

    /// Replace the brands (reload): new authentications use the new settings.
    pub fn set_brands(&self, brands: Brands) {
        *self.brands.write() = brands;
    }

    /// How every door shows message ids to brands and reads them back.
    pub fn ids(&self) -> &IdCipher {
        &self.cipher
    }

    /// A message id for a submission to come (see [`Submission::id`]).
    pub fn mint(&self) -> MsgId {
        self.ids.next()
    }

    /// Where a message stands: from memory while in flight here, else from the
    /// store (final statuses of HTTP messages; with a shared store, any node's).
    pub async fn status(&self, id: MsgId) -> Result<Option<MessageStatus>, AcceptError> {
        if let Some(m) = self.tracker.get(id) {
            return Ok(Some(MessageStatus::in_flight(&m)));
        }
        let store = self.tracker.store();
        let read = || async {
            store
                .message_status(id)
                .await
                .map_err(|_| AcceptError::StoreUnavailable)
        };
        if let Some(s) = read().await? {
            return Ok(Some(s));
        }
        // Not in memory and not stored: it may be finishing this very moment (its
        // final status queued for the store, not yet written). Wait for what is
        // queued and look once more, so a message just created is never 404 (a
        // flush of an idle store costs no commit: `writer::next_batch`).
        store.flush().wait().await;
        read().await
    }

    /// The store (the HTTP door keeps idempotency keys and verifications there).
    pub fn store(&self) -> &Arc<dyn otpgw_core::Store> {
        self.tracker.store()
    }

    /// Refuse new messages from now on (shutdown).
    pub fn close(&self) {
        self.closing.store(true, Ordering::Relaxed);
    }

    /// Accept a `submit_sm` from `brand` on SMPP session `origin` (0: none), or say
    /// why not.
    pub async fn accept(
        &self,
        brand: &BrandConfig,
        fields: SubmitFields,
        origin: u64,
        now_ms: u64,
    ) -> Result<MsgId, AcceptError> {
        let (to, body) = SmsBody::split(fields);
        let sub = Submission {
            to,
            body,
            origin,
            ..Default::default()
        };
        self.accept_with(brand, sub, now_ms).await.map(|a| a.id)
    }

    /// Accept a submission from any door, or say why not.
    pub async fn accept_with(
        &self,
        brand: &BrandConfig,
        sub: Submission,
        now_ms: u64,
    ) -> Result<Accepted, AcceptError> {
        if self.closing.load(Ordering::Relaxed) {
            return Err(AcceptError::ShuttingDown);
        }
        let Submission {
            to,
            body,
            class,
            extra,
            id,
            once,
            origin,
            group,
        } = sub;
        // The store's key of the brand's idempotency key (made once).
        let once = once.map(|(key, fp)| (once_key(&brand.system_id, &key), fp));
        let Body::Sms(sms) = &body;
        let class = class.unwrap_or(match sms.priority_flag {
            0 => brand.default_class,
            p => Class::from_priority_flag(p),
        });
        let lifetime = match class {
            Class::Otp => brand.otp_lifetime,
            Class::Bulk => brand.bulk_lifetime,
        };
        let deadline_ms = validate(&to, &body, now_ms, lifetime.as_millis() as u64)?;
        let limits = &brand.limits;
        if !limits.source_allowed(&sms.source.addr) {
            return Err(AcceptError::SourceNotAllowed);
        }
        if !limits.destination_allowed(to.key()) {
            return Err(AcceptError::DestinationNotAllowed);
        }
        if let Some((max, window)) = brand.per_destination
            && let Err(ms) =
                self.destinations
                    .lock()
                    .admit(&brand.system_id, to.key(), max, window, now_ms)
        {
            return Err(AcceptError::DestinationOverLimit(ms));
        }
        if !limits.take(now_ms) {
            return Err(AcceptError::BrandRate);
        }
        let queue = self
            .dispatcher
            .check(&brand.system_id, to.key(), now_ms)
            .map_err(|e| match e {
                DispatchError::NoRoute => AcceptError::NoRoute,
                DispatchError::QueueFull(_) => AcceptError::QueueFull,
                DispatchError::NoCarrier(_) => AcceptError::CarrierDown,
            })?;
        let msg = Arc::new(Message {
            id: id.unwrap_or_else(|| match &once {
                // The key and the message share a partition of the store.
                Some((key, _)) => {
                    let n = self.tracker.store().partitions();
                    self.ids
                        .next_in(n, otpgw_core::store::key_partition(key, n))
                }
                None => self.ids.next(),
            }),
            brand: brand.system_id.clone(),
            to,
            body,
            class,
            accepted_ms: now_ms,
            deadline_ms,
            attempts: Default::default(),
            extra,
            origin,
            progress: Default::default(),
            group,
        });
        let store = self.tracker.store();
        match once {
            None => store
                .accept(&msg)
                .await
                .map_err(|_| AcceptError::StoreUnavailable)?,
            Some((key, fingerprint)) => {
                let value = once_value(msg.id, &fingerprint);
                match store
                    .accept_once(&msg, &key, value, now_ms + ONCE_TTL_MS)
                    .await
                    .map_err(|_| AcceptError::StoreUnavailable)?
                {
                    Once::Accepted => {}
                    Once::Duplicate(v) => {
                        let (id, fp) = parse_once_value(&v).ok_or(AcceptError::StoreUnavailable)?;
                        return Ok(Accepted {
                            id,
                            duplicate: Some(fp.to_vec()),
                        });
                    }
                }
            }
        }
        if store.is_shared() {
            // Other nodes answer status queries for it from the store.
            store.record_status(&MessageStatus::in_flight(&msg));
        }
        self.tracker.insert(msg.clone());
        let id = msg.id;
        self.dispatcher.enqueue(queue, msg, now_ms);
        Ok(Accepted {
            id,
            duplicate: None,
        })
    }
}
