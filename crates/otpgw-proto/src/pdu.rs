//! Builders and readers for the PDUs otpgw uses, over rusmpp's owned types.
//!
//! The rest of the gateway works with the plain structs here ([`SubmitFields`],
//! [`DeliverView`]) rather than rusmpp types, so a rusmpp upgrade touches this
//! file only. Also holds [`lenient_deliver_sm`], a byte-level reader for receipts
//! that rusmpp refuses (a `receipted_message_id` without its NUL, say).

use bytes::Bytes;
use rusmpp::pdus::{
    BindReceiver, BindTransceiver, BindTransceiverResp, BindTransmitter, DeliverSm, SubmitSm,
    SubmitSmResp,
};
use rusmpp::tlvs::{MessageDeliveryRequestTlvValue, MessageSubmissionRequestTlvValue, TlvValue};
use rusmpp::types::{COctetString, EmptyOrFullCOctetString, OctetString};
use rusmpp::values::{
    DataCoding, EsmClass, InterfaceVersion, MessagePayload, MessageState, Npi, PriorityFlag,
    RegisteredDelivery, ServiceType, Ton,
};
use rusmpp::{Command, CommandStatus, Pdu};

use crate::receipt::{self, DeliveryState};
use crate::status::cmd;

/// An SMPP address: type of number, numbering plan, digits or alphanumeric text.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Address {
    pub ton: u8,
    pub npi: u8,
    pub addr: String,
}

impl std::fmt::Debug for Address {
    /// Never prints the full address: phone numbers are personal data.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.ton, self.npi, mask_number(&self.addr))
    }
}

/// Mask a phone number for logs: keep the first two and last two characters.
pub fn mask_number(n: &str) -> String {
    let chars: Vec<char> = n.chars().collect();
    if chars.len() <= 4 {
        return "*".repeat(chars.len());
    }
    let mut out = String::with_capacity(chars.len());
    for (i, c) in chars.iter().enumerate() {
        out.push(if i < 2 || i >= chars.len() - 2 {
            *c
        } else {
            '*'
        });
    }
    out
}

/// The fields of a `submit_sm` the gateway keeps, copied out of the read buffer.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SubmitFields {
    pub service_type: String,
    pub source: Address,
    pub dest: Address,
    pub esm_class: u8,
    pub protocol_id: u8,
    pub priority_flag: u8,
    pub schedule_delivery_time: String,
    pub validity_period: String,
    pub registered_delivery: u8,
    pub data_coding: u8,
    pub short_message: Bytes,
    /// The `message_payload` TLV, when present.
    pub message_payload: Option<Bytes>,
}

impl std::fmt::Debug for SubmitFields {
    /// Redacts the text and masks the numbers.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubmitFields")
            .field("source", &self.source)
            .field("dest", &self.dest)
            .field("esm_class", &self.esm_class)
            .field("priority_flag", &self.priority_flag)
            .field("registered_delivery", &self.registered_delivery)
            .field("data_coding", &self.data_coding)
            .field("short_message_len", &self.short_message.len())
            .field(
                "payload_len",
                &self.message_payload.as_ref().map(Bytes::len),
            )
            .finish_non_exhaustive()
    }
}

/// esm_class bit: the short message starts with a User Data Header.
pub const UDHI: u8 = 0x40;

/// The `sar_` TLVs of a submission (all `None`: none present).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sar {
    pub reference: Option<u16>,
    pub total: Option<u8>,
    pub seq: Option<u8>,
}

/// The `message_payload` and `sar_` TLVs among a submission's TLVs.
pub(crate) fn payload_and_sar<'a>(
    tlvs: impl Iterator<Item = &'a TlvValue>,
) -> (Option<Bytes>, Sar) {
    let mut payload = None;
    let mut sar = Sar::default();
    for v in tlvs {
        match v {
            TlvValue::MessagePayload(p) => {
                payload = Some(Bytes::copy_from_slice(p.value.as_ref()));
            }
            TlvValue::SarMsgRefNum(r) => sar.reference = Some(*r),
            TlvValue::SarTotalSegments(n) => sar.total = Some(*n),
            TlvValue::SarSegmentSeqnum(n) => sar.seq = Some(*n),
            _ => {}
        }
    }
    (payload, sar)
}

/// Copy a C-string field, without its NUL terminator.
pub(crate) fn copy_str(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

impl SubmitFields {
    /// Copy the kept fields out of a decoded `submit_sm` (so the read buffer is not pinned).
    /// `sar_` TLVs (a part of a message the brand split itself) become a User Data
    /// Header (see [`SubmitFields::apply_sar`]).
    pub fn from_submit_sm(s: &SubmitSm) -> Self {
        let (message_payload, sar) = payload_and_sar(s.tlvs().iter().filter_map(|t| t.value()));
        let mut f = Self {
            service_type: copy_str(s.service_type.value().as_ref()),
            source: Address {
                ton: s.source_addr_ton.into(),
                npi: s.source_addr_npi.into(),
                addr: s.source_addr.as_str().to_string(),
            },
            dest: Address {
                ton: s.dest_addr_ton.into(),
                npi: s.dest_addr_npi.into(),
                addr: s.destination_addr.as_str().to_string(),
            },
            esm_class: s.esm_class.into(),
            protocol_id: s.protocol_id,
            priority_flag: s.priority_flag.into(),
            schedule_delivery_time: copy_str(s.schedule_delivery_time.as_ref()),
            validity_period: copy_str(s.validity_period.as_ref()),
            registered_delivery: s.registered_delivery.into(),
            data_coding: s.data_coding.into(),
            short_message: Bytes::copy_from_slice(s.short_message().as_ref()),
            message_payload,
        };
        f.apply_sar(sar);
        f
    }

    /// A part the brand split itself and marked with the `sar_msg_ref_num`,
    /// `sar_total_segments` and `sar_segment_seqnum` TLVs goes to carriers with the
    /// same concatenation as a User Data Header (16-bit reference, IEI 0x08: every
    /// carrier and phone takes it; few carriers take the TLVs): the header is put
    /// before the text and esm_class gets [`UDHI`]. A TLV missing counts as 0, so
    /// an incomplete set makes a header the acceptor refuses (segment 0 or total 0).
    /// A text that already starts with a header (UDHI set) is left as it is.
    pub fn apply_sar(&mut self, sar: Sar) {
        if sar == Sar::default() || self.esm_class & UDHI != 0 {
            return;
        }
        let [hi, lo] = sar.reference.unwrap_or(0).to_be_bytes();
        let total = sar.total.unwrap_or(0);
        let seq = sar.seq.unwrap_or(0);
        let udh = [0x06, 0x08, 0x04, hi, lo, total, seq];
        let prefix = |text: &Bytes| {
            let mut b = bytes::BytesMut::with_capacity(udh.len() + text.len());
            b.extend_from_slice(&udh);
            b.extend_from_slice(text);
            b.freeze()
        };
        match &mut self.message_payload {
            Some(p) => *p = prefix(p),
            None => self.short_message = prefix(&self.short_message),
        }
        self.esm_class |= UDHI;
    }

    /// The message text (from `message_payload` when present).
    pub fn text(&self) -> &[u8] {
        self.message_payload
            .as_deref()
            .unwrap_or(&self.short_message)
    }

    /// Build a `submit_sm` from these fields. Fields rusmpp refuses (an address over
    /// 20 characters, a bad time) are reported, not truncated.
    pub fn to_submit_sm(&self) -> Result<SubmitSm, PduError> {
        self.to_submit_sm_part(None, None, false)
    }

    /// Build the `submit_sm` for these fields with two changes: `validity`, when
    /// given, replaces the validity_period; `part`, when given, replaces the text
    /// (sent as `short_message`, no `message_payload`), and `udh` sets esm_class's
    /// UDHI bit for a concatenated part.
    pub fn to_submit_sm_part(
        &self,
        validity: Option<&str>,
        part: Option<&Bytes>,
        udh: bool,
    ) -> Result<SubmitSm, PduError> {
        let esm_class = if udh {
            self.esm_class | UDHI
        } else {
            self.esm_class
        };
        let mut b = SubmitSm::builder()
            .service_type(ServiceType::new(COctetString::from_str_checked(
                &self.service_type,
            )?))
            .source_addr_ton(Ton::from(self.source.ton))
            .source_addr_npi(Npi::from(self.source.npi))
            .source_addr(COctetString::from_str_checked(&self.source.addr)?)
            .dest_addr_ton(Ton::from(self.dest.ton))
            .dest_addr_npi(Npi::from(self.dest.npi))
            .destination_addr(COctetString::from_str_checked(&self.dest.addr)?)
            .esm_class(EsmClass::from(esm_class))
            .protocol_id(self.protocol_id)
            .priority_flag(PriorityFlag::from(self.priority_flag))
            .schedule_delivery_time(time_field(&self.schedule_delivery_time)?)
            .validity_period(time_field(validity.unwrap_or(&self.validity_period))?)
            .registered_delivery(RegisteredDelivery::from(self.registered_delivery))
            .data_coding(DataCoding::from(self.data_coding));
        if let Some(t) = part {
            b = b.short_message(octets(t)?);
        } else if let Some(p) = &self.message_payload {
            b = b.push_tlv(MessageSubmissionRequestTlvValue::MessagePayload(
                MessagePayload::new(rusmpp::types::AnyOctetString::from_bytes(p.clone())),
            ));
        } else {
            b = b.short_message(octets(&self.short_message)?);
        }
        Ok(b.build())
    }
}

/// A field rusmpp refused while building a PDU.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PduError {
    #[error("field too long or not ASCII")]
    BadString,
    #[error("octet string longer than 254")]
    TooLong,
}

pub(crate) trait FromStrChecked: Sized {
    fn from_str_checked(s: &str) -> Result<Self, PduError>;
}

impl<const MIN: usize, const MAX: usize> FromStrChecked for COctetString<MIN, MAX> {
    fn from_str_checked(s: &str) -> Result<Self, PduError> {
        let mut v = Vec::with_capacity(s.len() + 1);
        v.extend_from_slice(s.as_bytes());
        v.push(0);
        COctetString::from_vec(v).map_err(|_| PduError::BadString)
    }
}

fn time_field(s: &str) -> Result<EmptyOrFullCOctetString<17>, PduError> {
    let mut v = Vec::with_capacity(s.len() + 1);
    v.extend_from_slice(s.as_bytes());
    v.push(0);
    EmptyOrFullCOctetString::from_vec(v).map_err(|_| PduError::BadString)
}

fn octets(b: &Bytes) -> Result<OctetString<0, 255>, PduError> {
    OctetString::from_bytes(b.clone()).map_err(|_| PduError::TooLong)
}

/// A `submit_sm_resp` carrying `message_id`.
pub fn submit_sm_resp(sequence_number: u32, message_id: &str) -> Command {
    let id = COctetString::from_str_checked(message_id).unwrap_or_default();
    Command::new(
        CommandStatus::EsmeRok,
        sequence_number,
        SubmitSmResp::builder().message_id(id).build(),
    )
}

/// The message id of a `submit_sm_resp`, if it carries one.
pub fn submit_sm_resp_id(c: &Command) -> Option<String> {
    match c.pdu() {
        Some(Pdu::SubmitSmResp(r)) => Some(r.message_id().as_str().to_string()),
        _ => None,
    }
}

/// Credentials and mode of a bind.
#[derive(Clone)]
pub struct BindParams {
    pub system_id: String,
    pub password: String,
    pub system_type: String,
}

impl std::fmt::Debug for BindParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BindParams")
            .field("system_id", &self.system_id)
            .field("password", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// A bind request (`command_id` one of the three bind commands) as SMPP 3.4.
pub fn bind(command_id: u32, sequence_number: u32, p: &BindParams) -> Result<Command, PduError> {
    macro_rules! build {
        ($t:ident) => {
            $t::builder()
                .system_id(COctetString::from_str_checked(&p.system_id)?)
                .password(COctetString::from_str_checked(&p.password)?)
                .system_type(COctetString::from_str_checked(&p.system_type)?)
                .interface_version(InterfaceVersion::Smpp3_4)
                .build()
        };
    }
    let pdu: Pdu = match command_id {
        cmd::BIND_TRANSMITTER => build!(BindTransmitter).into(),
        cmd::BIND_RECEIVER => build!(BindReceiver).into(),
        _ => build!(BindTransceiver).into(),
    };
    Ok(Command::new(CommandStatus::EsmeRok, sequence_number, pdu))
}

/// What a bind request asked for.
#[derive(Debug, Clone)]
pub struct BindRequest {
    pub command_id: u32,
    pub params: BindParams,
}

/// Read a bind request.
pub fn bind_request(c: &Command) -> Option<BindRequest> {
    let (s, p, t) = match c.pdu()? {
        Pdu::BindTransmitter(b) => (&b.system_id, &b.password, &b.system_type),
        Pdu::BindReceiver(b) => (&b.system_id, &b.password, &b.system_type),
        Pdu::BindTransceiver(b) => (&b.system_id, &b.password, &b.system_type),
        _ => return None,
    };
    Some(BindRequest {
        command_id: u32::from(c.id()),
        params: BindParams {
            system_id: s.as_str().to_string(),
            password: p.as_str().to_string(),
            system_type: t.as_str().to_string(),
        },
    })
}

/// A successful bind response of the right kind for `request_id`.
pub fn bind_resp(request_id: u32, sequence_number: u32, system_id: &str) -> Command {
    let sid = COctetString::from_str_checked(system_id).unwrap_or_default();
    let pdu: Pdu = match request_id {
        cmd::BIND_TRANSMITTER => {
            rusmpp::pdus::BindTransmitterResp::new(sid, Some(InterfaceVersion::Smpp3_4)).into()
        }
        cmd::BIND_RECEIVER => {
            rusmpp::pdus::BindReceiverResp::new(sid, Some(InterfaceVersion::Smpp3_4)).into()
        }
        _ => BindTransceiverResp::new(sid, Some(InterfaceVersion::Smpp3_4)).into(),
    };
    Command::new(CommandStatus::EsmeRok, sequence_number, pdu)
}

/// A header-only PDU ready for the writer (generic_nack, error responses,
/// enquire_link, unbind and their responses).
pub fn header_only(command_id: u32, status: u32, sequence_number: u32) -> Command {
    let pdu = match command_id {
        cmd::ENQUIRE_LINK => Some(Pdu::EnquireLink),
        cmd::ENQUIRE_LINK_RESP => Some(Pdu::EnquireLinkResp),
        cmd::UNBIND => Some(Pdu::Unbind),
        cmd::UNBIND_RESP => Some(Pdu::UnbindResp),
        cmd::GENERIC_NACK => Some(Pdu::GenericNack),
        _ => None,
    };
    match pdu {
        Some(p) => Command::new(CommandStatus::from(status), sequence_number, p),
        None => Command::from_parts(rusmpp::command::CommandParts::new(
            rusmpp::CommandId::from(command_id),
            CommandStatus::from(status),
            sequence_number,
            None,
        )),
    }
}

/// A `deliver_sm_resp` with status ESME_ROK.
pub fn deliver_sm_resp(sequence_number: u32, status: u32) -> Command {
    if status == crate::status::ESME_ROK {
        Command::new(
            CommandStatus::EsmeRok,
            sequence_number,
            rusmpp::pdus::DeliverSmResp::builder().build(),
        )
    } else {
        header_only(cmd::DELIVER_SM_RESP, status, sequence_number)
    }
}

/// A receipt to send as `deliver_sm` (esm_class 0x04).
#[derive(Debug, Clone)]
pub struct ReceiptPdu<'a> {
    /// Original destination: the receipt's source.
    pub source: &'a Address,
    /// Original source: the receipt's destination.
    pub dest: &'a Address,
    pub message_id: &'a str,
    pub state: DeliveryState,
    pub submit_date: &'a str,
    pub done_date: &'a str,
    pub err: &'a str,
}

/// Build a receipt `deliver_sm` with `receipted_message_id` and `message_state` TLVs
/// and the standard text (with an empty `text:`).
pub fn receipt_deliver_sm(r: &ReceiptPdu<'_>) -> Result<DeliverSm, PduError> {
    let text = receipt::format(
        r.message_id,
        r.state == DeliveryState::Delivered,
        r.submit_date,
        r.done_date,
        r.state,
        r.err,
    );
    Ok(DeliverSm::builder()
        .service_type(ServiceType::default())
        .source_addr_ton(Ton::from(r.source.ton))
        .source_addr_npi(Npi::from(r.source.npi))
        .source_addr(COctetString::from_str_checked(&r.source.addr)?)
        .dest_addr_ton(Ton::from(r.dest.ton))
        .dest_addr_npi(Npi::from(r.dest.npi))
        .destination_addr(COctetString::from_str_checked(&r.dest.addr)?)
        .esm_class(EsmClass::from(0x04))
        .registered_delivery(RegisteredDelivery::from(0))
        .data_coding(DataCoding::from(0))
        .short_message(octets(&Bytes::from(text))?)
        .push_tlv(MessageDeliveryRequestTlvValue::ReceiptedMessageId(
            COctetString::from_str_checked(r.message_id)?,
        ))
        .push_tlv(MessageDeliveryRequestTlvValue::MessageState(
            MessageState::from(r.state.tlv()),
        ))
        .build())
}

/// What the gateway reads from a `deliver_sm`, whichever reader produced it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliverView {
    pub esm_class: u8,
    pub source: String,
    pub dest: String,
    pub short_message: Bytes,
    /// `receipted_message_id` TLV (NUL stripped).
    pub receipted_message_id: Option<String>,
    /// `message_state` TLV.
    pub message_state: Option<u8>,
    /// `network_error_code` TLV (type, code).
    pub network_error: Option<(u8, u16)>,
}

impl DeliverView {
    /// Read a decoded `deliver_sm`.
    pub fn from_deliver_sm(d: &DeliverSm) -> Self {
        let mut v = DeliverView {
            esm_class: d.esm_class.into(),
            source: d.source_addr.as_str().to_string(),
            dest: d.destination_addr.as_str().to_string(),
            short_message: Bytes::copy_from_slice(d.short_message().as_ref()),
            ..Default::default()
        };
        for t in d.tlvs() {
            match t.value() {
                Some(TlvValue::ReceiptedMessageId(id)) => {
                    v.receipted_message_id = Some(id.as_str().to_string())
                }
                Some(TlvValue::MessageState(s)) => v.message_state = Some((*s).into()),
                Some(TlvValue::NetworkErrorCode(n)) => {
                    v.network_error = Some((n.network_type.into(), n.error_code))
                }
                _ => {}
            }
        }
        v
    }

    /// Whether esm_class marks an SMSC delivery receipt (message type 0x04).
    pub fn is_receipt(&self) -> bool {
        self.esm_class & 0x3C == 0x04
    }

    /// The receipt this `deliver_sm` carries: TLVs win over the text.
    pub fn receipt(&self) -> Option<CarrierReceipt> {
        let text = receipt::parse(&self.short_message);
        let id = self.receipted_message_id.clone().or(text.id)?;
        let state = self
            .message_state
            .and_then(DeliveryState::from_tlv)
            .or(text.stat)
            .unwrap_or(DeliveryState::Unknown);
        let err = match (self.network_error, text.err) {
            (Some((_, code)), _) => Some(format!("{code:03}")),
            (None, e) => e,
        };
        Some(CarrierReceipt { id, state, err })
    }
}

/// A receipt as read from a carrier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarrierReceipt {
    /// The carrier's message id, as sent.
    pub id: String,
    pub state: DeliveryState,
    pub err: Option<String>,
}

/// Read a `deliver_sm` body (after the header) byte by byte, for receipts rusmpp
/// refuses: C-strings without their NUL at the end of a TLV, over-long fields.
/// Returns `None` only when even the mandatory part is cut short.
pub fn lenient_deliver_sm(body: &[u8]) -> Option<DeliverView> {
    let mut p = 0usize;
    let cstr = |p: &mut usize| -> Option<String> {
        let rest = body.get(*p..)?;
        let end = rest.iter().position(|&b| b == 0)?;
        *p += end + 1;
        Some(String::from_utf8_lossy(&rest[..end]).into_owned())
    };
    let _service_type = cstr(&mut p)?;
    p += 2;
    let source = cstr(&mut p)?;
    p += 2;
    let dest = cstr(&mut p)?;
    let esm_class = *body.get(p)?;
    p += 3; // esm_class, protocol_id, priority_flag
    let _schedule = cstr(&mut p)?;
    let _validity = cstr(&mut p)?;
    p += 4; // registered_delivery, replace_if_present, data_coding, sm_default_msg_id
    let sm_len = *body.get(p)? as usize;
    p += 1;
    let sm = body.get(p..p + sm_len)?;
    p += sm_len;
    let mut v = DeliverView {
        esm_class,
        source,
        dest,
        short_message: Bytes::copy_from_slice(sm),
        ..Default::default()
    };
    while p + 4 <= body.len() {
        let tag = u16::from_be_bytes([body[p], body[p + 1]]);
        let len = u16::from_be_bytes([body[p + 2], body[p + 3]]) as usize;
        p += 4;
        let val = &body[p..(p + len).min(body.len())];
        p += len;
        match tag {
            0x001E => {
                let end = val.iter().position(|&b| b == 0).unwrap_or(val.len());
                v.receipted_message_id = Some(String::from_utf8_lossy(&val[..end]).into_owned());
            }
            0x0427 => v.message_state = val.first().copied(),
            0x0423 if val.len() >= 3 => {
                v.network_error = Some((val[0], u16::from_be_bytes([val[1], val[2]])))
            }
            _ => {}
        }
    }
    Some(v)
}

#[cfg(test)]
mod tests;
