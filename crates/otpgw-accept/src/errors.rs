//! Why a brand's message is refused, and the one place that maps each reason to
//! what each door answers: an SMPP command status ([`AcceptError::status`]) and an
//! HTTP status with its stable error code ([`AcceptError::http`]).
//!
//! SMPP:
//!
//! | reason | status |
//! |---|---|
//! | destination not a plausible number, or no route for it | ESME_RINVDSTADR (0x0B) |
//! | source address empty or malformed | ESME_RINVSRCADR (0x0A) |
//! | text too long, or both short_message and message_payload set | ESME_RINVMSGLEN (0x01) |
//! | a part (UDH or `sar_` TLVs) with segment 0, total 0, segment past total, or a malformed header | ESME_RINVOPTPARAMVAL (0xC4) |
//! | data_coding not supported | ESME_RINVDCS (0x104) |
//! | validity_period malformed or already past | ESME_RINVEXPIRY (0x62) |
//! | schedule_delivery_time set (not supported) | ESME_RINVSCHED (0x61) |
//! | queue for the route full | ESME_RMSGQFUL (0x14) |
//! | no carrier of the route available for `queue.refuse_after_down_ms` | ESME_RTHROTTLED (0x58) |
//! | store unavailable | ESME_RSYSERR (0x08) |
//! | too many submits of the session waiting for the disk, or the store's queue full | ESME_RTHROTTLED (0x58) |
//! | gateway shutting down | ESME_RTHROTTLED (0x58), temporary: retry elsewhere or later |
//! | brand over its `max_rate` | ESME_RTHROTTLED (0x58) |
//! | source address not in the brand's `allowed_sources` | ESME_RINVSRCADR (0x0A) |
//! | destination outside the brand's `allowed_prefixes` | ESME_RINVDSTADR (0x0B) |
//! | destination number over the brand's `max_per_destination` in its window | ESME_RSUBMITFAIL (0x45) |
//! | `submit_multi` with no destination or more than 254 | ESME_RINVNUMDESTS (0x33) |
//! | replacement (`replace_sm`, `replace_if_present_flag`) of a message not held any more, at a carrier already, of another brand, or from another source | ESME_RREPLACEFAIL (0x13) |

use otpgw_proto::status::*;

/// See the module docs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AcceptError {
    #[error("destination address is not a plausible phone number")]
    BadDestination,
    #[error("no route for the destination")]
    NoRoute,
    #[error("source address is empty or malformed")]
    BadSource,
    #[error("message text is too long ({0} octets)")]
    TooLong(usize),
    #[error("short_message and message_payload are both set")]
    BothTextFields,
    #[error("concatenation (sar_ TLVs or user data header) malformed or inconsistent")]
    BadConcatenation,
    #[error("data_coding {0:#x} is not supported")]
    BadDataCoding(u8),
    #[error("validity_period is malformed or already past")]
    BadValidity,
    #[error("schedule_delivery_time is not supported")]
    Scheduled,
    #[error("queue full")]
    QueueFull,
    #[error("no carrier available for the route")]
    CarrierDown,
    #[error("store unavailable")]
    StoreUnavailable,
    #[error("too many messages waiting: slow down")]
    Throttled,
    #[error("gateway shutting down")]
    ShuttingDown,
    #[error("brand over its message rate")]
    BrandRate,
    #[error("source address not allowed for this brand")]
    SourceNotAllowed,
    #[error("destination not allowed for this brand")]
    DestinationNotAllowed,
    #[error("submit_multi needs 1 to 254 destinations")]
    BadDestinationCount,
    #[error("the message cannot be replaced (unknown, finished or at a carrier already)")]
    ReplaceFailed,
    /// Over the brand's cap for the number; its window ends in this many ms.
    #[error("too many messages to this destination number")]
    DestinationOverLimit(u64),
}

/// How the HTTP door answers a refusal: status, stable error code, the request
/// field at fault, and `Retry-After` seconds for a temporary refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpRefusal {
    pub status: u16,
    pub code: &'static str,
    pub field: Option<&'static str>,
    pub retry_after: Option<u64>,
}

impl HttpRefusal {
    const fn new(status: u16, code: &'static str) -> Self {
        Self {
            status,
            code,
            field: None,
            retry_after: None,
        }
    }
    const fn field(self, field: &'static str) -> Self {
        Self {
            field: Some(field),
            ..self
        }
    }
    const fn retry(self, secs: u64) -> Self {
        Self {
            retry_after: Some(secs),
            ..self
        }
    }
}

impl AcceptError {
    /// The HTTP answer for this refusal (HTTP field names: `to`, `from`, `text`,
    /// `validity_secs`).
    pub fn http(&self) -> HttpRefusal {
        type R = HttpRefusal;
        match self {
            Self::BadDestination => R::new(400, "invalid_number").field("to"),
            Self::NoRoute => R::new(422, "no_route").field("to"),
            Self::BadSource => R::new(400, "invalid_sender").field("from"),
            Self::TooLong(_) => R::new(400, "text_too_long").field("text"),
            Self::BothTextFields | Self::BadDataCoding(_) | Self::BadConcatenation => {
                R::new(400, "invalid_text").field("text")
            }
            Self::BadValidity | Self::Scheduled => {
                R::new(400, "invalid_validity").field("validity_secs")
            }
            Self::QueueFull => R::new(503, "queue_full").retry(1),
            Self::CarrierDown => R::new(503, "carrier_unavailable").retry(5),
            Self::StoreUnavailable => R::new(503, "store_unavailable").retry(1),
            Self::Throttled => R::new(429, "throttled").retry(1),
            Self::ShuttingDown => R::new(503, "shutting_down").retry(5),
            Self::BrandRate => R::new(429, "rate_limited").retry(1),
            Self::SourceNotAllowed => R::new(403, "sender_not_allowed").field("from"),
            Self::DestinationNotAllowed => R::new(403, "destination_not_allowed").field("to"),
            Self::ReplaceFailed => R::new(409, "not_replaceable"),
            Self::BadDestinationCount => R::new(400, "invalid_number").field("to"),
            Self::DestinationOverLimit(ms) => {
                R::new(429, "destination_rate_limited").retry(ms.div_ceil(1000).max(1))
            }
        }
    }

    /// The SMPP command status for this refusal.
    pub fn status(&self) -> u32 {
        match self {
            Self::BadDestination | Self::NoRoute => ESME_RINVDSTADR,
            Self::BadSource => ESME_RINVSRCADR,
            Self::TooLong(_) | Self::BothTextFields => ESME_RINVMSGLEN,
            Self::BadDataCoding(_) => ESME_RINVDCS,
            Self::BadConcatenation => ESME_RINVOPTPARAMVAL,
            Self::BadValidity => ESME_RINVEXPIRY,
            Self::Scheduled => ESME_RINVSCHED,
            Self::QueueFull => ESME_RMSGQFUL,
            Self::CarrierDown => ESME_RTHROTTLED,
            Self::StoreUnavailable => ESME_RSYSERR,
            Self::Throttled => ESME_RTHROTTLED,
            Self::ShuttingDown => ESME_RTHROTTLED,
            Self::BrandRate => ESME_RTHROTTLED,
            Self::SourceNotAllowed => ESME_RINVSRCADR,
            Self::DestinationNotAllowed => ESME_RINVDSTADR,
            Self::DestinationOverLimit(_) => ESME_RSUBMITFAIL,
            Self::ReplaceFailed => ESME_RREPLACEFAIL,
            Self::BadDestinationCount => ESME_RINVNUMDESTS,
        }
    }
}
