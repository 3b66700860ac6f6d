//! Receipts owed as webhooks: messages from the HTTP door that named a
//! `receipt_url` get their final status POSTed there, signed.
//!
//! - Fallback events of OTPs whose SMS attempts were all spent go the same way, to
//!   the brand's `fallback_url` (`Otpgw-Event: message.fallback`).
//! - Signed: `Otpgw-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>"
//!   with the brand's webhook_secret>`. The timestamp is inside the signature, so a
//!   receiver that refuses signatures older than a few minutes cannot be replayed
//!   an old delivery ([`verify`] does both checks). `Otpgw-Event-Id` is the message
//!   id, for receivers that drop repeats.
//! - Durable: the receipt is in the store (as every receipt owed to a brand) until
//!   the brand's endpoint answered 2xx; after a restart it is sent again.
//! - Retried: a failure (no answer within the timeout, a non-2xx answer) is tried
//!   again after 1 s, doubling to 10 minutes, with jitter, until `max_age` after the
//!   message finished; then it is dropped and counted.
//! - Bounded per brand: at most `concurrency` posts in flight and the outbox's
//!   capacity waiting; redirects are not followed.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio_util::sync::CancellationToken;

use otpgw_accept::Brands;
use otpgw_core::Store;
use otpgw_core::clock::now_ms;
use otpgw_core::outbox::{BrandOutbox, Outbox, ReceiptJob};
use otpgw_core::public_id::IdCipher;
use otpgw_core::status::Stage;
use otpgw_proto::time::rfc3339;

use crate::auth::hex;
use crate::url_policy::{PolicyResolver, UrlPolicy};

/// Webhook delivery settings.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Posts in flight per brand.
    pub concurrency: usize,
    /// A webhook not delivered this long after its message finished is dropped.
    pub max_age: Duration,
    /// How long one post may take.
    pub timeout: Duration,
    /// Longest wait between tries.
    pub max_backoff: Duration,
    /// Where webhooks may go ([`crate::url_policy`]).
    pub urls: UrlPolicy,
}

impl Default for WebhookConfig {
    /// 16 in flight per brand, retried for 24 hours, 10 s per post, at most 10
    /// minutes apart.
    fn default() -> Self {
        Self {
            concurrency: 16,
            max_age: Duration::from_secs(86_400),
            timeout: Duration::from_secs(10),
            max_backoff: Duration::from_secs(600),
            urls: UrlPolicy::default(),
        }
    }
}

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &[u8], t: u64, body: &[u8]) -> HmacSha256 {
    let mut m = match HmacSha256::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC accepts any key length"),
    };
    m.update(t.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m
}

/// The `Otpgw-Signature` header of `body` sent at `t` (unix seconds).
pub fn sign(secret: &[u8], t: u64, body: &[u8]) -> String {
    format!(
        "t={t},v1={}",
        hex(&mac(secret, t, body).finalize().into_bytes())
    )
}

/// Whether `header` signs `body` with `secret` and is at most `tolerance` seconds
/// away from `now` (what a receiver checks).
pub fn verify(secret: &[u8], header: &str, body: &[u8], now: u64, tolerance: u64) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", x)) => t = x.parse::<u64>().ok(),
            Some(("v1", x)) => v1 = Some(x),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    if t.abs_diff(now) > tolerance || v1.len() != 64 {
        return false;
    }
    let Some(sig): Option<Vec<u8>> = (0..32)
        .map(|i| u8::from_str_radix(v1.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
    else {
        return false;
    };
    mac(secret, t, body).verify_slice(&sig).is_ok()
}

/// The event name of a job: a message's final status, or an OTP's fallback event.
pub fn event(job: &ReceiptJob) -> &'static str {
    if job.is_fallback() {
        "message.fallback"
    } else {
        "message.status"
    }
}

/// The `otpgw-event-id` of a webhook: the message's public id, with
/// [`otpgw_core::outbox::FALLBACK_BIT`] set for its fallback event (so a brand
/// tells the two events of one message apart).
pub fn event_id(job: &ReceiptJob, ids: &IdCipher) -> String {
    let mut id = ids.hide(job.message_id());
    if job.is_fallback() {
        id.0 |= otpgw_core::outbox::FALLBACK_BIT;
    }
    id.to_string()
}

/// The JSON body of a receipt webhook, or of a fallback event (every SMS attempt
/// of an OTP failed or got no receipt in time, with time left before its deadline:
/// the brand's voice or push service can take over).
pub fn payload(job: &ReceiptJob, ids: &IdCipher) -> Vec<u8> {
    let id = ids.hide(job.message_id()).to_string();
    let err = Some(job.err.as_str()).filter(|e| !e.is_empty() && *e != "000");
    if job.is_fallback() {
        let reason = if job.err == "TMO" {
            "no_receipt_in_time"
        } else {
            "sms_failed"
        };
        return serde_json::json!({
            "event": "message.fallback",
            "id": id,
            "to": format!("+{}", job.source.addr),
            "reason": reason,
            "last_status": Stage::Done(job.state).name(),
            "error_code": err.filter(|e| *e != "TMO"),
            "time_left_ms": job.deadline_ms.saturating_sub(job.done_ms),
            "expires_at": rfc3339(job.deadline_ms),
            "at": rfc3339(job.done_ms),
        })
        .to_string()
        .into_bytes();
    }
    serde_json::json!({
        "event": "message.status",
        "id": id,
        "status": Stage::Done(job.state).name(),
        "error_code": err,
        "to": format!("+{}", job.source.addr),
        "submitted_at": rfc3339(job.submit_ms),
        "done_at": rfc3339(job.done_ms),
    })
    .to_string()
    .into_bytes()
}

struct Sender {
    outbox: Arc<Outbox>,
    store: Arc<dyn Store>,
    brands: Arc<parking_lot::RwLock<Brands>>,
    ids: IdCipher,
    client: reqwest::Client,
    cfg: WebhookConfig,
    stop: CancellationToken,
}

/// Start delivering webhooks until `stop`.
pub fn spawn(
    outbox: Arc<Outbox>,
    store: Arc<dyn Store>,
    brands: Arc<parking_lot::RwLock<Brands>>,
    ids: IdCipher,
    cfg: WebhookConfig,
    stop: CancellationToken,
) -> Result<(), reqwest::Error> {
    let client = reqwest::Client::builder()
        .timeout(cfg.timeout)
        .connect_timeout(cfg.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .dns_resolver(Arc::new(PolicyResolver(cfg.urls.clone())))
        .user_agent(concat!("otpgw/", env!("CARGO_PKG_VERSION")))
        .build()?;
    let s = Arc::new(Sender {
        outbox,
        store,
        brands,
        ids,
        client,
        cfg,
        stop,
    });
    tokio::spawn(run(s));
    Ok(())
}

/// One worker per brand with webhooks.
async fn run(s: Arc<Sender>) {
    let mut started: HashSet<Arc<str>> = HashSet::new();
    loop {
        let added = s.outbox.hook_added();
        tokio::pin!(added);
        added.as_mut().enable();
        for (brand, q) in s.outbox.all_hooks() {
            if started.insert(brand.clone()) {
                tokio::spawn(worker(s.clone(), brand, q));
            }
        }
        tokio::select! {
            _ = s.stop.cancelled() => return,
            _ = added => {}
        }
    }
}

/// When to try again after `attempts` failures: 1 s doubling to `max`, each drawn
/// between half and all of its step.
fn backoff(attempts: u8, max: Duration, r: f64) -> Duration {
    let step = Duration::from_secs(1u64 << attempts.saturating_sub(1).min(20)).min(max);
    step.mul_f64(0.5 + 0.5 * r.clamp(0.0, 1.0))
}

async fn worker(s: Arc<Sender>, brand: Arc<str>, q: Arc<BrandOutbox>) {
    let delivered = metrics::counter!("otpgw_webhooks_total", "brand" => brand.to_string(), "result" => "delivered");
    let failed = metrics::counter!("otpgw_webhooks_total", "brand" => brand.to_string(), "result" => "failed");
    let dropped = metrics::counter!("otpgw_webhooks_total", "brand" => brand.to_string(), "result" => "dropped");
    let latency = metrics::histogram!("otpgw_webhook_seconds", "brand" => brand.to_string());
    let pending = metrics::gauge!("otpgw_webhooks_pending_messages", "brand" => brand.to_string());
    let mut inflight = FuturesUnordered::new();
    // (due ms, order) -> job.
    let mut retry: BinaryHeap<Reverse<(u64, u64)>> = BinaryHeap::new();
    let mut waiting: HashMap<u64, ReceiptJob> = HashMap::new();
    let mut seq = 0u64;
    let mut taken = Vec::new();
    loop {
        let now = now_ms();
        pending.set((q.len() + waiting.len() + inflight.len()) as f64);
        // Due retries first.
        while inflight.len() < s.cfg.concurrency
            && let Some(Reverse((due, k))) = retry.peek().copied()
            && due <= now
        {
            retry.pop();
            if let Some(job) = waiting.remove(&k) {
                inflight.push(post(s.clone(), job));
            }
        }
        let room = s.cfg.concurrency.saturating_sub(inflight.len());
        let next_due = retry.peek().map(|Reverse((d, _))| *d);
        tokio::select! {
            _ = s.stop.cancelled() => return,
            _ = q.take(room, &mut taken), if room > 0 => {
                for job in taken.drain(..) {
                    inflight.push(post(s.clone(), job));
                }
            }
            _ = async {
                match next_due {
                    Some(d) => tokio::time::sleep(Duration::from_millis(d.saturating_sub(now_ms()))).await,
                    None => std::future::pending().await,
                }
            }, if next_due.is_some() => {}
            Some((mut job, took, res)) = inflight.next(), if !inflight.is_empty() => {
                latency.record(took.as_secs_f64());
                match res {
                    Ok(()) => {
                        delivered.increment(1);
                        s.store.receipt_forwarded(job.id);
                    }
                    Err(why) => {
                        failed.increment(1);
                        job.attempts = job.attempts.saturating_add(1);
                        let age = now_ms().saturating_sub(job.done_ms);
                        if age >= s.cfg.max_age.as_millis() as u64 {
                            dropped.increment(1);
                            tracing::warn!(%brand, id = %job.id, attempts = job.attempts, "webhook given up after its retry period");
                            s.store.receipt_forwarded(job.id);
                            continue;
                        }
                        tracing::debug!(%brand, id = %job.id, attempts = job.attempts, error = %why, "webhook failed; will retry");
                        let wait = backoff(job.attempts, s.cfg.max_backoff, rand::random());
                        if waiting.len() >= 100_000 {
                            // Too many waiting here: back in the (bounded) queue.
                            q.push(job);
                            continue;
                        }
                        seq += 1;
                        retry.push(Reverse((now_ms() + wait.as_millis() as u64, seq)));
                        waiting.insert(seq, job);
                    }
                }
            }
        }
    }
}

/// Post one webhook: the job, how long it took, and the outcome.
async fn post(s: Arc<Sender>, job: ReceiptJob) -> (ReceiptJob, Duration, Result<(), String>) {
    let started = std::time::Instant::now();
    let res = post_one(&s, &job).await;
    (job, started.elapsed(), res)
}

async fn post_one(s: &Sender, job: &ReceiptJob) -> Result<(), String> {
    let Some(url) = job.url.as_deref() else {
        return Ok(());
    };
    // Again at every post: the policy may have changed since the URL was taken,
    // and an address written in the URL is not resolved (the resolver does not
    // see it).
    let url = s.cfg.urls.check(url).map_err(|e| {
        tracing::warn!(brand = %job.brand, error = %e, "webhook URL refused");
        "url refused".to_string()
    })?;
    let secret = s
        .brands
        .read()
        .get(&job.brand)
        .and_then(|b| b.webhook_secret.clone())
        .ok_or("the brand has no webhook_secret")?;
    let body = payload(job, &s.ids);
    let t = now_ms() / 1000;
    let r = s
        .client
        .post(url)
        .header("content-type", "application/json")
        .header("otpgw-signature", sign(secret.as_bytes(), t, &body))
        .header("otpgw-event", event(job))
        .header("otpgw-event-id", event_id(job, &s.ids))
        .body(body)
        .send()
        .await
        .map_err(|e| {
            // reqwest's message can carry the URL: keep only its kind.
            if e.is_timeout() {
                "timeout".to_string()
            } else if e.is_connect() {
                "connect".to_string()
            } else {
                "request failed".to_string()
            }
        })?;
    if r.status().is_success() {
        Ok(())
    } else {
        Err(format!("status {}", r.status().as_u16()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_expire() {
        let body = br#"{"id":"1"}"#;
        let h = sign(b"s3cret", 1_000, body);
        assert!(h.starts_with("t=1000,v1="));
        assert!(verify(b"s3cret", &h, body, 1_100, 300));
        assert!(
            !verify(b"s3cret", &h, body, 1_400, 300),
            "too old: a replay"
        );
        assert!(!verify(b"other", &h, body, 1_000, 300));
        assert!(!verify(b"s3cret", &h, br#"{"id":"2"}"#, 1_000, 300));
        let forged = h.replace("t=1000", "t=1300");
        assert!(
            !verify(b"s3cret", &forged, body, 1_300, 300),
            "the time is signed"
        );
        assert!(!verify(b"s3cret", "garbage", body, 1_000, 300));
    }

    #[test]
    fn backoff_doubles_to_the_cap() {
        let max = Duration::from_secs(600);
        assert_eq!(backoff(1, max, 1.0), Duration::from_secs(1));
        assert_eq!(backoff(4, max, 1.0), Duration::from_secs(8));
        assert_eq!(backoff(4, max, 0.0), Duration::from_secs(4));
        assert_eq!(backoff(30, max, 1.0), max);
    }
}
