//! Every documented metric series (docs/metrics.md) registered at 0 when the
//! gateway starts, for the carriers and brands in its config, so dashboards and
//! alerts see them before their first event (an alert on the first expiries must
//! have a series to watch). Series whose labels come from traffic (a destination
//! country, an HTTP route and status, a carrier's quantiles) appear with their
//! first value; docs/metrics.md says which.

use otpgw_proto::receipt::DeliveryState;
use otpgw_proto::status;

use crate::config::Config;

/// Counters without labels.
const COUNTERS: &[&str] = &[
    "otpgw_audit_lines_total",
    "otpgw_brand_bind_failures_total",
    "otpgw_brand_bind_timeouts_total",
    "otpgw_brand_binds_locked_out_total",
    "otpgw_brand_connections_refused_total",
    "otpgw_brand_idle_closed_total",
    "otpgw_brand_malformed_pdus_total",
    "otpgw_brand_sessions_killed_total",
    "otpgw_brand_slow_pdus_total",
    "otpgw_brand_tls_handshake_failures_total",
    "otpgw_http_auth_failures_total",
    "otpgw_http_auth_locked_out_total",
    "otpgw_http_connections_refused_total",
    "otpgw_http_idempotent_replays_total",
    "otpgw_http_tls_handshake_failures_total",
    "otpgw_messages_cancelled_total",
    "otpgw_messages_replaced_total",
    "otpgw_numbers_erased_total",
    "otpgw_receipts_ambiguous_total",
    "otpgw_receipts_dropped_total",
    "otpgw_receipts_duplicate_total",
    "otpgw_receipts_expired_total",
    "otpgw_receipts_from_other_nodes_total",
    "otpgw_receipts_handed_over_total",
    "otpgw_receipts_possibly_redelivered_total",
    "otpgw_receipts_unmatched_total",
    "otpgw_store_busy_total",
    "otpgw_store_commit_failures_total",
    "otpgw_store_reopens_total",
    "otpgw_store_replica_waits_short_total",
    "otpgw_store_redis_failovers_total",
    "otpgw_store_write_failures_total",
    "otpgw_store_writes_dropped_total",
];

/// Counters per carrier.
const PER_CARRIER: &[&str] = &[
    "otpgw_carrier_malformed_pdus_total",
    "otpgw_carrier_mo_ignored_total",
    "otpgw_otp_fallbacks_total",
    "otpgw_receipt_timeouts_total",
    "otpgw_receipts_late_total",
    "otpgw_receipts_parked_total",
];

/// Counters per brand.
const PER_BRAND: &[&str] = &[
    "otpgw_brand_binds_over_limit_total",
    "otpgw_fallback_events_total",
    "otpgw_messages_accepted_total",
    "otpgw_receipts_forwarded_total",
];

/// Statuses a `submit_sm` is refused with (docs/smpp-status.md), labelled in
/// `otpgw_messages_rejected_total` by `status::name` as the door does.
const REJECTED: &[u32] = &[
    status::ESME_RINVMSGLEN,
    status::ESME_RINVSRCADR,
    status::ESME_RINVDSTADR,
    status::ESME_RINVDCS,
    status::ESME_RINVEXPIRY,
    status::ESME_RINVSCHED,
    status::ESME_RMSGQFUL,
    status::ESME_RTHROTTLED,
    status::ESME_RSUBMITFAIL,
    status::ESME_RSYSERR,
    status::ESME_RINVOPTPARAMVAL,
    status::ESME_RREPLACEFAIL,
];

/// `otpgw_verifications_total` outcomes.
const VERIFY_OUTCOMES: &[&str] = &[
    "created",
    "resent",
    "superseded",
    "approved",
    "denied",
    "transaction_mismatch",
    "expired",
    "max_attempts",
    "check_superseded",
    "refused_number",
    "refused_prefix",
];

/// Every final state a message can reach.
const STATES: &[DeliveryState] = &[
    DeliveryState::Delivered,
    DeliveryState::Expired,
    DeliveryState::Deleted,
    DeliveryState::Undeliverable,
    DeliveryState::Accepted,
    DeliveryState::Unknown,
    DeliveryState::Rejected,
    DeliveryState::Skipped,
];

/// The process's resident memory and open files, from `/proc/self` (Linux; left
/// at 0 elsewhere).
pub(crate) fn process_gauges() {
    let rss_kib = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        });
    if let Some(k) = rss_kib {
        metrics::gauge!("otpgw_process_resident_memory_bytes").set((k * 1024) as f64);
    }
    if let Ok(d) = std::fs::read_dir("/proc/self/fd") {
        metrics::gauge!("otpgw_process_open_fds").set(d.count() as f64);
    }
}

/// Register them (with the metrics recorder installed).
pub fn zero(cfg: &Config) {
    metrics::gauge!("otpgw_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    for g in [
        "otpgw_messages_in_flight",
        "otpgw_receipts_awaited_messages",
        "otpgw_process_resident_memory_bytes",
        "otpgw_process_open_fds",
    ] {
        metrics::gauge!(g).increment(0.0);
    }
    process_gauges();
    for n in COUNTERS {
        metrics::counter!(*n).increment(0);
    }
    for o in ["cancelled", "absent", "forgotten"] {
        metrics::counter!("otpgw_store_unknown_accepts_total", "outcome" => o).increment(0);
    }
    for r in otpgw_store::codec::UNREADABLE_REASONS {
        metrics::counter!("otpgw_store_records_unreadable_total", "reason" => r).increment(0);
    }
    for s in STATES {
        metrics::counter!("otpgw_messages_finished_total", "state" => s.label()).increment(0);
    }
    for h in ["otpgw_accept_latency_seconds", "otpgw_store_scrub_seconds"] {
        let _ = metrics::histogram!(h);
    }
    // Gauges: `increment(0.0)` registers without changing a value already set.
    metrics::gauge!("otpgw_store_backlog_writes").increment(0.0);
    for c in &cfg.carriers {
        for n in PER_CARRIER {
            metrics::counter!(*n, "carrier" => c.name.clone()).increment(0);
        }
        for class in ["otp", "bulk"] {
            metrics::gauge!("otpgw_queue_depth_messages", "carrier" => c.name.clone(), "class" => class)
                .increment(0.0);
        }
    }
    for b in &cfg.brands {
        let brand = b.system_id.clone();
        for n in PER_BRAND {
            metrics::counter!(*n, "brand" => brand.clone()).increment(0);
        }
        metrics::gauge!("otpgw_brand_sessions", "brand" => brand.clone()).increment(0.0);
        metrics::gauge!("otpgw_receipts_held_messages", "brand" => brand.clone()).increment(0.0);
        for st in REJECTED {
            metrics::counter!("otpgw_messages_rejected_total", "brand" => brand.clone(), "status" => status::name(*st))
                .increment(0);
        }
        if cfg.http.is_some() {
            for r in ["delivered", "failed", "dropped"] {
                metrics::counter!("otpgw_webhooks_total", "brand" => brand.clone(), "result" => r)
                    .increment(0);
            }
            let _ = metrics::histogram!("otpgw_webhook_seconds", "brand" => brand.clone());
            metrics::gauge!("otpgw_webhooks_pending_messages", "brand" => brand.clone())
                .increment(0.0);
        }
        if cfg.verify.is_some() {
            for o in VERIFY_OUTCOMES {
                metrics::counter!("otpgw_verifications_total", "brand" => brand.clone(), "outcome" => *o)
                    .increment(0);
            }
            let _ = metrics::histogram!("otpgw_verification_approval_seconds", "brand" => brand.clone());
        }
    }
}

/// When each certificate otpgw presents expires, by use (`smpp`: the brand TLS
/// listener, `http`: the HTTP API's, `carrier_client`: the soonest of the carrier
/// client certificates), as Unix seconds. A file that cannot be read was refused
/// by the config check already; it is left out here.
pub(crate) fn cert_expiries(cfg: &Config) -> Vec<(&'static str, i64)> {
    let mut files: Vec<(&'static str, &std::path::Path)> = Vec::new();
    if cfg.server.tls_listen.is_some()
        && let Some(f) = &cfg.server.tls_cert_file
    {
        files.push(("smpp", f));
    }
    if let Some(f) = cfg.http.as_ref().and_then(|h| h.tls_cert_file.as_ref()) {
        files.push(("http", f));
    }
    for c in &cfg.carriers {
        if let Some(f) = &c.tls_client_cert_file {
            files.push(("carrier_client", f));
        }
    }
    let mut out: Vec<(&'static str, i64)> = Vec::new();
    for (usage, f) in files {
        let Ok(t) = otpgw_accept::tls::not_after(f) else {
            continue;
        };
        match out.iter_mut().find(|(u, _)| *u == usage) {
            Some((_, soonest)) => *soonest = (*soonest).min(t),
            None => out.push((usage, t)),
        }
    }
    out
}

/// `otpgw_tls_cert_expiry_seconds{use}`: seconds left before each certificate
/// expires (negative once it has), set at start and at each scrape.
pub(crate) fn cert_gauges(expiries: &[(&'static str, i64)]) {
    let now = (otpgw_core::clock::now_ms() / 1000) as i64;
    for (usage, t) in expiries {
        metrics::gauge!("otpgw_tls_cert_expiry_seconds", "use" => *usage).set((t - now) as f64);
    }
}
