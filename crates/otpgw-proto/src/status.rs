//! SMPP command ids and command status codes used by otpgw, as plain numbers.
//!
//! rusmpp has typed enums for these; the gateway keeps raw `u32` values at its
//! boundaries so vendor codes (0x400..=0x4FF) and unknown ids never need a special case.

/// Command ids (SMPP 3.4 section 5.1.2.1).
pub mod cmd {
    pub const GENERIC_NACK: u32 = 0x8000_0000;
    pub const BIND_RECEIVER: u32 = 0x0000_0001;
    pub const BIND_RECEIVER_RESP: u32 = 0x8000_0001;
    pub const BIND_TRANSMITTER: u32 = 0x0000_0002;
    pub const BIND_TRANSMITTER_RESP: u32 = 0x8000_0002;
    pub const QUERY_SM: u32 = 0x0000_0003;
    pub const QUERY_SM_RESP: u32 = 0x8000_0003;
    pub const SUBMIT_SM: u32 = 0x0000_0004;
    pub const SUBMIT_SM_RESP: u32 = 0x8000_0004;
    pub const DELIVER_SM: u32 = 0x0000_0005;
    pub const DELIVER_SM_RESP: u32 = 0x8000_0005;
    pub const CANCEL_SM: u32 = 0x0000_0008;
    pub const CANCEL_SM_RESP: u32 = 0x8000_0008;
    pub const REPLACE_SM: u32 = 0x0000_0007;
    pub const REPLACE_SM_RESP: u32 = 0x8000_0007;
    pub const SUBMIT_MULTI: u32 = 0x0000_0021;
    pub const SUBMIT_MULTI_RESP: u32 = 0x8000_0021;
    pub const DATA_SM: u32 = 0x0000_0103;
    pub const DATA_SM_RESP: u32 = 0x8000_0103;
    pub const UNBIND: u32 = 0x0000_0006;
    pub const UNBIND_RESP: u32 = 0x8000_0006;
    pub const BIND_TRANSCEIVER: u32 = 0x0000_0009;
    pub const BIND_TRANSCEIVER_RESP: u32 = 0x8000_0009;
    pub const ENQUIRE_LINK: u32 = 0x0000_0015;
    pub const ENQUIRE_LINK_RESP: u32 = 0x8000_0015;

    /// Whether `id` is a response (high bit set).
    pub const fn is_response(id: u32) -> bool {
        id & 0x8000_0000 != 0
    }

    /// The response id for a request id.
    pub const fn response_of(id: u32) -> u32 {
        id | 0x8000_0000
    }
}

pub const ESME_ROK: u32 = 0x00;
pub const ESME_RINVMSGLEN: u32 = 0x01;
pub const ESME_RINVCMDLEN: u32 = 0x02;
pub const ESME_RINVCMDID: u32 = 0x03;
pub const ESME_RINVBNDSTS: u32 = 0x04;
pub const ESME_RALYBND: u32 = 0x05;
pub const ESME_RINVPRTFLG: u32 = 0x06;
pub const ESME_RINVREGDLVFLG: u32 = 0x07;
pub const ESME_RSYSERR: u32 = 0x08;
pub const ESME_RINVSRCADR: u32 = 0x0A;
pub const ESME_RINVDSTADR: u32 = 0x0B;
pub const ESME_RBINDFAIL: u32 = 0x0D;
pub const ESME_RINVPASWD: u32 = 0x0E;
pub const ESME_RINVSYSID: u32 = 0x0F;
pub const ESME_RMSGQFUL: u32 = 0x14;
pub const ESME_RCANCELFAIL: u32 = 0x11;
pub const ESME_RREPLACEFAIL: u32 = 0x13;
pub const ESME_RQUERYFAIL: u32 = 0x67;
pub const ESME_RINVNUMDESTS: u32 = 0x33;
pub const ESME_RINVDLNAME: u32 = 0x34;
pub const ESME_RINVESMCLASS: u32 = 0x43;
pub const ESME_RINVOPTPARAMVAL: u32 = 0xC4;
pub const ESME_RSUBMITFAIL: u32 = 0x45;
pub const ESME_RTHROTTLED: u32 = 0x58;
pub const ESME_RINVSCHED: u32 = 0x61;
pub const ESME_RINVEXPIRY: u32 = 0x62;
pub const ESME_RX_T_APPN: u32 = 0x64;
pub const ESME_RINVDCS: u32 = 0x104;
pub const ESME_RUNKNOWNERR: u32 = 0xFF;

/// A short, stable name for a status code, for metric labels and logs.
/// Unknown and vendor codes map to `"other"` so a label never has unbounded values.
pub fn name(status: u32) -> &'static str {
    match status {
        ESME_ROK => "ok",
        ESME_RINVMSGLEN => "invmsglen",
        ESME_RINVCMDLEN => "invcmdlen",
        ESME_RINVCMDID => "invcmdid",
        ESME_RINVBNDSTS => "invbndsts",
        ESME_RALYBND => "alybnd",
        ESME_RSYSERR => "syserr",
        ESME_RINVSRCADR => "invsrcadr",
        ESME_RINVDSTADR => "invdstadr",
        ESME_RBINDFAIL => "bindfail",
        ESME_RINVPASWD => "invpaswd",
        ESME_RINVSYSID => "invsysid",
        ESME_RMSGQFUL => "msgqful",
        ESME_RCANCELFAIL => "cancelfail",
        ESME_RREPLACEFAIL => "replacefail",
        ESME_RQUERYFAIL => "queryfail",
        ESME_RINVNUMDESTS => "invnumdests",
        ESME_RINVDLNAME => "invdlname",
        ESME_RINVESMCLASS => "invesmclass",
        ESME_RINVOPTPARAMVAL => "invoptparamval",
        ESME_RSUBMITFAIL => "submitfail",
        ESME_RTHROTTLED => "throttled",
        ESME_RINVSCHED => "invsched",
        ESME_RINVEXPIRY => "invexpiry",
        ESME_RX_T_APPN => "x_t_appn",
        ESME_RINVDCS => "invdcs",
        _ => "other",
    }
}

/// Whether a carrier's answer means "try again later" rather than "this message is refused".
/// Follows common carrier practice: throttling, queue full, system error and
/// temporary application errors are retryable.
pub const fn is_temporary(status: u32) -> bool {
    matches!(
        status,
        ESME_RTHROTTLED | ESME_RMSGQFUL | ESME_RSYSERR | ESME_RX_T_APPN
    )
}
