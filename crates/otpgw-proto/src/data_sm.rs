//! `data_sm` from a brand: the same submission as a `submit_sm` whose text is in
//! `message_payload` (there is no `short_message`), answered with `data_sm_resp`.

use rusmpp::pdus::{DataSm, DataSmResp};
use rusmpp::types::COctetString;
use rusmpp::{Command, CommandStatus};

use crate::pdu::{Address, FromStrChecked, SubmitFields, copy_str};

impl SubmitFields {
    /// The fields of a submission from a decoded `data_sm` (no `protocol_id`,
    /// priority, validity or schedule: the gateway's defaults apply).
    pub fn from_data_sm(d: &DataSm) -> Self {
        let (message_payload, sar) =
            crate::pdu::payload_and_sar(d.tlvs().iter().filter_map(|t| t.value()));
        let mut f = Self {
            service_type: copy_str(d.service_type.value().as_ref()),
            source: Address {
                ton: d.source_addr_ton.into(),
                npi: d.source_addr_npi.into(),
                addr: d.source_addr.as_str().to_string(),
            },
            dest: Address {
                ton: d.dest_addr_ton.into(),
                npi: d.dest_addr_npi.into(),
                addr: d.destination_addr.as_str().to_string(),
            },
            esm_class: d.esm_class.into(),
            registered_delivery: d.registered_delivery.into(),
            data_coding: d.data_coding.into(),
            message_payload,
            ..Default::default()
        };
        f.apply_sar(sar);
        f
    }
}

/// The `data_sm_resp` (ESME_ROK) carrying `message_id`.
pub fn data_sm_resp(sequence_number: u32, message_id: &str) -> Command {
    let id = COctetString::from_str_checked(message_id).unwrap_or_default();
    Command::new(
        CommandStatus::EsmeRok,
        sequence_number,
        DataSmResp::builder().message_id(id).build(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusmpp::tlvs::MessageSubmissionRequestTlvValue;
    use rusmpp::values::MessagePayload;
    use rusmpp::values::{Npi, Ton};

    #[test]
    fn a_data_sm_is_a_submission_with_its_payload() {
        let mut d = DataSm::builder()
            .source_addr_ton(Ton::Alphanumeric)
            .source_addr(COctetString::from_str_checked("BANK").unwrap())
            .dest_addr_ton(Ton::International)
            .dest_addr_npi(Npi::Isdn)
            .destination_addr(COctetString::from_str_checked("447400900123").unwrap())
            .build();
        d.push_tlv(MessageSubmissionRequestTlvValue::MessagePayload(
            MessagePayload::new(rusmpp::types::AnyOctetString::from_vec(
                b"Your code is 123456".to_vec(),
            )),
        ));
        let f = SubmitFields::from_data_sm(&d);
        assert_eq!(f.dest.addr, "447400900123");
        assert_eq!(f.source.addr, "BANK");
        assert_eq!(f.text(), b"Your code is 123456");
        assert!(f.short_message.is_empty());
        match data_sm_resp(3, "00ab").pdu() {
            Some(rusmpp::Pdu::DataSmResp(r)) => assert_eq!(r.message_id().as_str(), "00ab"),
            _ => panic!("not a data_sm_resp"),
        }
    }
}
