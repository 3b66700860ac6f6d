//! `submit_multi` from a brand: one text to up to 254 numbers, read into the fields
//! of one submission and its destinations; `submit_multi_resp` with the numbers
//! that were refused. Distribution lists are not supported (each is refused).

use rusmpp::pdus::{SubmitMulti, SubmitMultiResp};
use rusmpp::types::COctetString;
use rusmpp::values::{DestAddress, Npi, Ton, UnsuccessSme};
use rusmpp::{Command, CommandStatus};

use crate::pdu::{Address, FromStrChecked, SubmitFields, copy_str, payload_and_sar};

/// The most destinations one `submit_multi` may name.
pub const MAX_DESTS: usize = 254;

/// One destination of a `submit_multi`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dest {
    /// A number.
    Sme(Address),
    /// A distribution list name (not supported: refused).
    List(String),
}

/// The submission's fields (with `dest` empty) and its destinations.
pub fn submit_multi_parts(s: &SubmitMulti) -> (SubmitFields, Vec<Dest>) {
    let (message_payload, sar) = payload_and_sar(s.tlvs().iter().filter_map(|t| t.value()));
    let mut f = SubmitFields {
        service_type: copy_str(s.service_type.value().as_ref()),
        source: Address {
            ton: s.source_addr_ton.into(),
            npi: s.source_addr_npi.into(),
            addr: s.source_addr.as_str().to_string(),
        },
        dest: Address::default(),
        esm_class: s.esm_class.into(),
        protocol_id: s.protocol_id,
        priority_flag: s.priority_flag.into(),
        schedule_delivery_time: copy_str(s.schedule_delivery_time.as_ref()),
        validity_period: copy_str(s.validity_period.as_ref()),
        registered_delivery: s.registered_delivery.into(),
        data_coding: s.data_coding.into(),
        short_message: bytes::Bytes::copy_from_slice(s.short_message().as_ref()),
        message_payload,
    };
    f.apply_sar(sar);
    let dests = s
        .dest_address()
        .iter()
        .map(|d| match d {
            DestAddress::SmeAddress(a) => Dest::Sme(Address {
                ton: a.dest_addr_ton.into(),
                npi: a.dest_addr_npi.into(),
                addr: a.destination_addr.as_str().to_string(),
            }),
            DestAddress::DistributionListName(l) => Dest::List(l.dl_name.as_str().to_string()),
        })
        .collect();
    (f, dests)
}

/// The `submit_multi_resp`: `status` (ESME_ROK when at least one destination was
/// accepted), the submission's `message_id`, and each refused destination with its
/// status.
pub fn submit_multi_resp(
    sequence_number: u32,
    status: u32,
    message_id: &str,
    refused: &[(Dest, u32)],
) -> Command {
    let id = COctetString::from_str_checked(message_id).unwrap_or_default();
    let unsuccess = refused
        .iter()
        .map(|(d, st)| {
            let (ton, npi, addr) = match d {
                Dest::Sme(a) => (a.ton, a.npi, a.addr.as_str()),
                Dest::List(name) => (0, 0, name.as_str()),
            };
            UnsuccessSme::new(
                Ton::from(ton),
                Npi::from(npi),
                COctetString::from_str_checked(addr).unwrap_or_default(),
                CommandStatus::from(*st),
            )
        })
        .collect();
    Command::new(
        CommandStatus::from(status),
        sequence_number,
        SubmitMultiResp::builder()
            .message_id(id)
            .unsuccess_sme(unsuccess)
            .build(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusmpp::Pdu;
    use rusmpp::types::OctetString;
    use rusmpp::values::{DistributionListName, SmeAddress};

    #[test]
    fn destinations_and_fields_read_back() {
        let num = |s: &str| {
            DestAddress::SmeAddress(SmeAddress::new(
                Ton::International,
                Npi::Isdn,
                COctetString::from_str_checked(s).unwrap(),
            ))
        };
        let mut m = SubmitMulti::builder()
            .source_addr(COctetString::from_str_checked("BANK").unwrap())
            .build();
        m.set_dest_address(vec![
            num("447400900001"),
            DestAddress::DistributionListName(DistributionListName::new(
                COctetString::from_str_checked("staff").unwrap(),
            )),
            num("447400900002"),
        ]);
        m.set_short_message(OctetString::from_vec(b"Your code is 123456".to_vec()).unwrap());
        let c = Command::new(CommandStatus::EsmeRok, 3, m);
        let Some(Pdu::SubmitMulti(m)) = c.pdu() else {
            panic!("not a submit_multi")
        };
        let (f, dests) = submit_multi_parts(m);
        assert_eq!(f.source.addr, "BANK");
        assert_eq!(&f.short_message[..], b"Your code is 123456");
        assert_eq!(dests.len(), 3);
        assert!(matches!(&dests[0], Dest::Sme(a) if a.addr == "447400900001" && a.ton == 1));
        assert_eq!(dests[1], Dest::List("staff".into()));
        let r = submit_multi_resp(3, 0, "00000000000000ab", &[(dests[1].clone(), 0x34)]);
        let Some(Pdu::SubmitMultiResp(r)) = r.pdu() else {
            panic!("not a submit_multi_resp")
        };
        assert_eq!(r.message_id.as_str(), "00000000000000ab");
        assert_eq!(r.unsuccess_sme().len(), 1);
        assert_eq!(r.unsuccess_sme()[0].destination_addr.as_str(), "staff");
    }
}
