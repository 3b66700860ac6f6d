//! Carrier limits held for several gateway nodes together: the rate
//! ([`SharedLimit`]) and the number of binds ([`BindSlots`]).
//!
//! Each node's carrier binds keep their own rate limiter (the AIMD one in
//! `otpgw-dispatch`); when nodes share a carrier, they also ask a [`SharedLimit`]
//! for every batch they are about to send, and send only what it granted. The Redis
//! backend implements it as a token bucket in a Lua script.

use std::future::Future;
use std::pin::Pin;

use crate::store::StoreError;

/// A future of a shared-limit grant.
pub type GrantFuture<'a> = Pin<Box<dyn Future<Output = Result<usize, StoreError>> + Send + 'a>>;

/// Tokens of a carrier's rate shared by all nodes.
pub trait SharedLimit: Send + Sync + 'static {
    /// Take up to `want` tokens of `carrier`'s bucket (refilled at `rate` per second,
    /// holding at most `burst`); returns how many were granted. An error means the
    /// shared state is unreachable: the caller sends nothing and tries again later.
    fn take<'a>(&'a self, carrier: &'a str, rate: f64, burst: f64, want: usize) -> GrantFuture<'a>;
}

/// A future of a shared bind slot answer.
pub type SlotFuture<'a> = Pin<Box<dyn Future<Output = Result<bool, StoreError>> + Send + 'a>>;

/// Bind slots of a carrier shared by all nodes: the carrier allows so many binds
/// for the account, whatever the number of nodes.
pub trait BindSlots: Send + Sync + 'static {
    /// Take, or renew, slot `bind` (this node's bind number) of `carrier`'s at most
    /// `total`; `Ok(false)` when others hold every slot. A slot not renewed within
    /// the lease is free again.
    fn hold<'a>(&'a self, carrier: &'a str, total: usize, bind: usize) -> SlotFuture<'a>;
    /// Give slot `bind` back (the bind closed).
    fn release<'a>(&'a self, carrier: &'a str, bind: usize) -> SlotFuture<'a>;
    /// How often a held slot must be renewed.
    fn renew_every(&self) -> std::time::Duration;
}
