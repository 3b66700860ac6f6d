//! A carrier rate limit held for several gateway nodes together.
//!
//! Each node's carrier binds keep their own rate limiter (the AIMD one in
//! `otpgw-dispatch`); when nodes share a carrier, they also ask a [`SharedLimit`]
//! for every batch they are about to send, and send only what it granted. The Redis
//! backend implements it as a token bucket in a Lua script.

use std::future::Future;
use std::pin::Pin;

/// A future of a shared-limit grant.
pub type GrantFuture<'a> = Pin<Box<dyn Future<Output = Result<usize, String>> + Send + 'a>>;

/// Tokens of a carrier's rate shared by all nodes.
pub trait SharedLimit: Send + Sync + 'static {
    /// Take up to `want` tokens of `carrier`'s bucket (refilled at `rate` per second,
    /// holding at most `burst`); returns how many were granted. An error means the
    /// shared state is unreachable: the caller sends nothing and tries again later.
    fn take<'a>(&'a self, carrier: &'a str, rate: f64, burst: f64, want: usize) -> GrantFuture<'a>;
}
