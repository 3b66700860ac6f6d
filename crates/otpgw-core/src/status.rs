//! Where a message stands, as the HTTP door reports it (`GET /v1/messages/{id}`).
//!
//! Messages in flight are answered from memory (the tracker); the store keeps the
//! final status of messages that asked for one (those from the HTTP door) for the
//! finished-record retention, and, on a store several nodes share, their status from
//! acceptance on, so any node can answer.

use std::sync::Arc;

use otpgw_proto::receipt::DeliveryState;

use crate::message::{Message, MsgId};

/// How far a message got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Accepted, waiting for a carrier.
    Queued,
    /// A carrier confirmed it; waiting for the receipt.
    Sent,
    /// Final.
    Done(DeliveryState),
}

impl Stage {
    /// The name the HTTP API uses.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Queued => "queued",
            Stage::Sent => "sent",
            Stage::Done(s) => match s {
                DeliveryState::Delivered => "delivered",
                DeliveryState::Expired => "expired",
                DeliveryState::Deleted => "deleted",
                DeliveryState::Undeliverable => "undeliverable",
                DeliveryState::Rejected => "rejected",
                DeliveryState::Accepted => "accepted",
                DeliveryState::Enroute => "enroute",
                DeliveryState::Unknown | DeliveryState::Skipped => "unknown",
            },
        }
    }
}

/// A message's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageStatus {
    pub id: MsgId,
    /// The brand it belongs to (another brand's id answers "not found").
    pub brand: Arc<str>,
    pub stage: Stage,
    /// The carrier that took it, once one did.
    pub carrier: Option<String>,
    pub accepted_ms: u64,
    /// When a carrier confirmed it (0: not yet).
    pub sent_ms: u64,
    /// When it reached its final state (0: not yet).
    pub done_ms: u64,
    pub deadline_ms: u64,
    /// The carrier's (or the gateway's) error code of a final state; empty when none.
    pub err: String,
}

impl MessageStatus {
    /// The status of `msg` as far as memory knows it, before its final state.
    pub fn in_flight(msg: &Message) -> Self {
        let p = msg.progress.lock().clone();
        Self {
            id: msg.id,
            brand: msg.brand.clone(),
            stage: if p.sent_ms > 0 {
                Stage::Sent
            } else {
                Stage::Queued
            },
            carrier: p.carrier.map(|c| c.to_string()),
            accepted_ms: msg.accepted_ms,
            sent_ms: p.sent_ms,
            done_ms: 0,
            deadline_ms: msg.deadline_ms,
            err: String::new(),
        }
    }

    /// `msg` reached `state` at `now_ms` (error code `err`).
    pub fn finished(msg: &Message, state: DeliveryState, err: Option<&str>, now_ms: u64) -> Self {
        let mut s = Self::in_flight(msg);
        s.stage = Stage::Done(state);
        s.done_ms = now_ms;
        s.err = err.unwrap_or_default().to_string();
        s
    }
}
