//! Sans-IO SMPP session state, shared by both sides of the gateway and the simulator.
//!
//! A [`Session`] knows its bind state, hands out sequence numbers in
//! `1..=0x7FFFFFFF` (wrapping back to 1), keeps a bounded window of outstanding
//! requests each with its own deadline, and decides when an idle link needs an
//! `enquire_link` and when an unanswered one means the peer is gone. It performs no
//! IO and never reads a clock: every call takes `now`, so tests drive it on simulated
//! time. The async code around it owns sockets and timers.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use crate::status::cmd;

/// Largest sequence number SMPP allows.
pub const MAX_SEQUENCE: u32 = 0x7FFF_FFFF;

/// Bind state of a session (SMPP 3.4 section 2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindState {
    /// Connected, not bound yet.
    Open,
    /// Bound as transmitter (ESME sends submit_sm).
    Transmitter,
    /// Bound as receiver (MC sends deliver_sm).
    Receiver,
    /// Bound as transceiver (both).
    Transceiver,
    /// Unbind sent or received; the session is closing.
    Unbinding,
    /// Closed.
    Closed,
}

impl BindState {
    /// Whether the session is bound in any mode.
    pub fn is_bound(self) -> bool {
        matches!(self, Self::Transmitter | Self::Receiver | Self::Transceiver)
    }
    /// Whether the ESME may submit on this session.
    pub fn can_submit(self) -> bool {
        matches!(self, Self::Transmitter | Self::Transceiver)
    }
    /// Whether the MC may deliver on this session.
    pub fn can_deliver(self) -> bool {
        matches!(self, Self::Receiver | Self::Transceiver)
    }
    /// The bound state a bind request asks for.
    pub fn from_bind_command(command_id: u32) -> Option<Self> {
        match command_id {
            cmd::BIND_TRANSMITTER => Some(Self::Transmitter),
            cmd::BIND_RECEIVER => Some(Self::Receiver),
            cmd::BIND_TRANSCEIVER => Some(Self::Transceiver),
            _ => None,
        }
    }
}

/// Which end of the link this session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A message centre (otpgw towards brands, the carrier simulator).
    Smsc,
    /// An ESME (otpgw towards carriers, the load generator).
    Esme,
}

/// What a received request is allowed to do in the current state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Handle it.
    Allowed,
    /// Answer with this status in the matching response.
    Refuse(u32),
    /// Unknown command: answer generic_nack with ESME_RINVCMDID.
    GenericNack,
}

/// Decide whether a request received from the peer is allowed (responses are always
/// matched against the window instead).
pub fn admit(role: Role, state: BindState, command_id: u32) -> Admission {
    use crate::status::{ESME_RALYBND, ESME_RINVBNDSTS};
    match command_id {
        cmd::ENQUIRE_LINK => Admission::Allowed,
        cmd::UNBIND if state.is_bound() => Admission::Allowed,
        cmd::UNBIND => Admission::Refuse(ESME_RINVBNDSTS),
        cmd::BIND_TRANSMITTER | cmd::BIND_RECEIVER | cmd::BIND_TRANSCEIVER => match (role, state) {
            (Role::Smsc, BindState::Open) => Admission::Allowed,
            (Role::Smsc, s) if s.is_bound() => Admission::Refuse(ESME_RALYBND),
            _ => Admission::Refuse(ESME_RINVBNDSTS),
        },
        cmd::SUBMIT_SM
        | cmd::DATA_SM
        | cmd::QUERY_SM
        | cmd::CANCEL_SM
        | cmd::REPLACE_SM
        | cmd::SUBMIT_MULTI => match role {
            Role::Smsc if state.can_submit() => Admission::Allowed,
            _ => Admission::Refuse(ESME_RINVBNDSTS),
        },
        cmd::DELIVER_SM => match role {
            Role::Esme if state.can_deliver() => Admission::Allowed,
            _ => Admission::Refuse(ESME_RINVBNDSTS),
        },
        cmd::GENERIC_NACK => Admission::Allowed,
        _ => Admission::GenericNack,
    }
}

/// Timers and limits of a session.
#[derive(Debug, Clone, Copy)]
pub struct SessionConfig {
    /// Outstanding requests allowed at once.
    pub window: usize,
    /// How long a request may wait for its response.
    pub response_timeout: Duration,
    /// Send enquire_link after this long without traffic from the peer.
    pub enquire_link_interval: Duration,
    /// Declare the peer dead when an enquire_link is unanswered this long.
    pub enquire_link_timeout: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            window: 100,
            response_timeout: Duration::from_secs(10),
            enquire_link_interval: Duration::from_secs(30),
            enquire_link_timeout: Duration::from_secs(5),
        }
    }
}

/// The window is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("window full ({0} outstanding)")]
pub struct WindowFull(pub usize);

/// Something the driver must act on after [`Session::poll`].
#[derive(Debug, PartialEq, Eq)]
pub enum Timeout<T> {
    /// A tracked request got no response in time; its tag is returned.
    Response { sequence_number: u32, tag: T },
    /// The link is idle: send an enquire_link with this sequence number.
    SendEnquireLink { sequence_number: u32 },
    /// The peer did not answer an enquire_link: close the connection.
    LinkDead,
}

/// Sans-IO state of one SMPP session. `T` is what the owner attaches to each
/// outstanding request (a message id, say).
#[derive(Debug)]
pub struct Session<T> {
    cfg: SessionConfig,
    state: BindState,
    last_seq: u32,
    outstanding: HashMap<u32, (u64, T)>,
    /// Deadlines in send order; a constant timeout keeps them sorted. Entries whose
    /// request was answered are skipped lazily.
    deadlines: VecDeque<(u64, u32)>,
    last_rx: u64,
    enquire: Option<(u32, u64)>,
}

impl<T> Session<T> {
    /// A new, open (unbound) session.
    pub fn new(cfg: SessionConfig, now: u64) -> Self {
        Self {
            cfg,
            state: BindState::Open,
            last_seq: 0,
            outstanding: HashMap::with_capacity(cfg.window),
            deadlines: VecDeque::with_capacity(cfg.window),
            last_rx: now,
            enquire: None,
        }
    }

    /// The session's config.
    pub fn config(&self) -> &SessionConfig {
        &self.cfg
    }
    /// Current bind state.
    pub fn state(&self) -> BindState {
        self.state
    }
    /// Set the bind state (after a bind succeeded, an unbind, ...).
    pub fn set_state(&mut self, state: BindState) {
        self.state = state;
    }

    /// The next sequence number: 1..=0x7FFFFFFF, wrapping to 1, skipping any number
    /// still outstanding.
    pub fn next_sequence(&mut self) -> u32 {
        loop {
            self.last_seq = if self.last_seq >= MAX_SEQUENCE {
                1
            } else {
                self.last_seq + 1
            };
            if !self.outstanding.contains_key(&self.last_seq) {
                return self.last_seq;
            }
        }
    }

    /// Change the window (requests already outstanding stay; new ones wait for room).
    pub fn set_window(&mut self, window: usize) {
        self.cfg.window = window.max(1);
    }

    /// Requests awaiting a response.
    pub fn in_flight(&self) -> usize {
        self.outstanding.len()
    }
    /// Room left in the window.
    pub fn room(&self) -> usize {
        self.cfg.window.saturating_sub(self.outstanding.len())
    }

    /// Record a request just sent, so its response can be matched and its deadline kept.
    pub fn track(&mut self, sequence_number: u32, tag: T, now: u64) -> Result<(), WindowFull> {
        if self.outstanding.len() >= self.cfg.window {
            return Err(WindowFull(self.outstanding.len()));
        }
        let deadline = now + ms(self.cfg.response_timeout);
        self.outstanding.insert(sequence_number, (deadline, tag));
        self.deadlines.push_back((deadline, sequence_number));
        Ok(())
    }

    /// Track a request even when the window is full: the later parts of a long
    /// message, which go out on the same bind right after the first.
    pub fn track_beyond_window(&mut self, sequence_number: u32, tag: T, now: u64) {
        let deadline = now + ms(self.cfg.response_timeout);
        self.outstanding.insert(sequence_number, (deadline, tag));
        self.deadlines.push_back((deadline, sequence_number));
    }

    /// A response arrived: release its window slot and return the request's tag.
    /// `None` means no such request is outstanding (late or unsolicited response).
    pub fn on_response(&mut self, sequence_number: u32, now: u64) -> Option<T> {
        self.on_receive(now);
        if let Some((seq, _)) = self.enquire
            && seq == sequence_number
        {
            self.enquire = None;
            return None;
        }
        let tag = self.outstanding.remove(&sequence_number).map(|(_, t)| t);
        self.prune();
        tag
    }

    /// Drop answered requests from the front of the deadline queue, so its front is
    /// always a live request (amortised O(1)).
    fn prune(&mut self) {
        if self.outstanding.is_empty() {
            self.deadlines.clear();
            return;
        }
        while let Some(&(_, seq)) = self.deadlines.front() {
            if self.outstanding.contains_key(&seq) {
                break;
            }
            self.deadlines.pop_front();
        }
    }

    /// Anything arrived from the peer: the link is alive.
    pub fn on_receive(&mut self, now: u64) {
        self.last_rx = now;
    }

    /// Drain every request, e.g. when the connection is lost; returns their tags.
    pub fn drain(&mut self) -> Vec<T> {
        self.deadlines.clear();
        self.outstanding.drain().map(|(_, (_, t))| t).collect()
    }

    /// The earliest time (ms) at which [`Session::poll`] has something to do.
    pub fn next_deadline(&self) -> u64 {
        let mut at = match self.enquire {
            Some((_, sent)) => sent + ms(self.cfg.enquire_link_timeout),
            None => self.last_rx + ms(self.cfg.enquire_link_interval),
        };
        if let Some(&(d, _)) = self.deadlines.front() {
            at = at.min(d);
        }
        at
    }

    /// Advance timers to `now`: expire requests past their deadline, ask for an
    /// enquire_link on an idle link, and declare a link dead whose enquire_link went
    /// unanswered. Timed-out requests leave the window.
    pub fn poll(&mut self, now: u64) -> Vec<Timeout<T>> {
        let mut out = Vec::new();
        while let Some(&(deadline, seq)) = self.deadlines.front() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_front();
            if let Some((d, _)) = self.outstanding.get(&seq)
                && *d <= now
                && let Some((_, tag)) = self.outstanding.remove(&seq)
            {
                out.push(Timeout::Response {
                    sequence_number: seq,
                    tag,
                });
            }
        }
        self.prune();
        match self.enquire {
            Some((_, sent)) if now >= sent + ms(self.cfg.enquire_link_timeout) => {
                out.push(Timeout::LinkDead);
            }
            None if now >= self.last_rx + ms(self.cfg.enquire_link_interval) => {
                let seq = self.next_sequence();
                self.enquire = Some((seq, now));
                out.push(Timeout::SendEnquireLink {
                    sequence_number: seq,
                });
            }
            _ => {}
        }
        out
    }
}

/// A duration in milliseconds (the session's times are milliseconds since the
/// epoch, passed in by its driver).
fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

#[cfg(test)]
mod tests;
