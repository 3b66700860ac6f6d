//! `submit_multi`: one text to several numbers. Each number is its own message
//! (its own record in the store, its own route, limits and receipt), accepted like a
//! `submit_sm` and concurrently with the others (their store writes share group
//! commits). The brand gets one id for the submission, the first number's: every
//! destination's receipt carries it (a receipt's `source_addr` tells which number it
//! is about), and `query_sm` on it answers for the first number.

use otpgw_core::{MsgId, SmsBody};
use otpgw_proto::pdu::SubmitFields;
use otpgw_proto::status;
use otpgw_proto::submit_multi::{Dest, MAX_DESTS};

use crate::acceptor::{Acceptor, Submission};
use crate::brands::BrandConfig;
use crate::errors::AcceptError;

/// What a `submit_multi` came to.
#[derive(Debug)]
pub struct MultiOutcome {
    /// The submission's id (when at least one number was accepted), or why the
    /// whole submission is refused (every number was, or the request is malformed).
    pub id: Result<MsgId, AcceptError>,
    /// Numbers accepted.
    pub accepted: usize,
    /// Each destination refused, with its SMPP status.
    pub refused: Vec<(Dest, u32)>,
}

impl Acceptor {
    /// Accept `fields` (its `dest` ignored) for each of `dests` (see the module docs).
    pub async fn accept_multi(
        &self,
        brand: &BrandConfig,
        fields: SubmitFields,
        dests: Vec<Dest>,
        origin: u64,
        now_ms: u64,
    ) -> MultiOutcome {
        if dests.is_empty() || dests.len() > MAX_DESTS {
            return MultiOutcome {
                id: Err(AcceptError::BadDestinationCount),
                accepted: 0,
                refused: Vec::new(),
            };
        }
        let group = self.mint();
        let mut first = true;
        let mut jobs = Vec::new();
        let mut refused = Vec::new();
        for d in dests {
            let Dest::Sme(addr) = &d else {
                // Distribution lists are not kept here.
                refused.push((d, status::ESME_RINVDLNAME));
                continue;
            };
            let (to, body) = SmsBody::split(SubmitFields {
                dest: addr.clone(),
                ..fields.clone()
            });
            let sub = Submission {
                to,
                body,
                // The first number takes the submission's id.
                id: std::mem::take(&mut first).then_some(group),
                origin,
                group: Some(group),
                ..Default::default()
            };
            jobs.push(async move { (d, self.accept_with(brand, sub, now_ms).await) });
        }
        let mut accepted = 0;
        let mut first_err = None;
        for (d, res) in futures_util::future::join_all(jobs).await {
            match res {
                Ok(_) => accepted += 1,
                Err(e) => {
                    refused.push((d, e.status()));
                    first_err.get_or_insert(e);
                }
            }
        }
        let id = if accepted > 0 {
            Ok(group)
        } else {
            Err(first_err.unwrap_or(AcceptError::BadDestination))
        };
        MultiOutcome {
            id,
            accepted,
            refused,
        }
    }
}
