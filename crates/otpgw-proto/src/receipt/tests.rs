use super::*;

#[test]
fn standard_receipt() {
    let r = parse(b"id:0123456789 sub:001 dlvrd:001 submit date:2611261120 done date:2611261121 stat:DELIVRD err:000 text:Your code is 123456");
    assert_eq!(r.id.as_deref(), Some("0123456789"));
    assert_eq!(r.sub.as_deref(), Some("001"));
    assert_eq!(r.dlvrd.as_deref(), Some("001"));
    assert_eq!(r.submit_date.as_deref(), Some("2611261120"));
    assert_eq!(r.done_date.as_deref(), Some("2611261121"));
    assert_eq!(r.stat, Some(DeliveryState::Delivered));
    assert_eq!(r.err.as_deref(), Some("000"));
}

#[test]
fn missing_fields_and_odd_case() {
    let r = parse(b"ID:abc STAT:undeliv");
    assert_eq!(r.id.as_deref(), Some("abc"));
    assert_eq!(r.stat, Some(DeliveryState::Undeliverable));
    assert_eq!(r.err, None);
    assert_eq!(r.submit_date, None);
    let r = parse(b"stat:EXPIRED");
    assert_eq!(r.id, None);
    assert_eq!(r.stat, Some(DeliveryState::Expired));
    assert_eq!(parse(b""), ReceiptText::default());
}

#[test]
fn twelve_digit_dates_and_underscored_keys() {
    let r = parse(
        b"id:77 sub:1 dlvrd:1 submit_date:261126112059 done_date:261126112101 stat:DELIVRD err:0",
    );
    assert_eq!(r.submit_date.as_deref(), Some("261126112059"));
    assert_eq!(r.done_date.as_deref(), Some("261126112101"));
    assert_eq!(r.err.as_deref(), Some("0"));
}

#[test]
fn odd_err_values() {
    assert_eq!(
        parse(b"id:1 stat:UNDELIV err:0x1B").err.as_deref(),
        Some("0x1B")
    );
    assert_eq!(
        parse(b"id:1 stat:REJECTD err:E012").err.as_deref(),
        Some("E012")
    );
    assert_eq!(parse(b"id:1 stat:REJECTD err:").err, None);
}

#[test]
fn text_with_colons_and_key_like_words_is_ignored() {
    let r = parse(b"id:XYZ stat:DELIVRD err:000 text:stat:EXPIRED id:999 err:1 code: 42");
    assert_eq!(r.id.as_deref(), Some("XYZ"));
    assert_eq!(r.stat, Some(DeliveryState::Delivered));
    assert_eq!(r.err.as_deref(), Some("000"));
}

#[test]
fn unknown_stat_and_non_utf8() {
    let r = parse(b"id:5 stat:WHATEVER err:\xff\xfe");
    assert_eq!(r.id.as_deref(), Some("5"));
    assert_eq!(r.stat, None);
    assert!(r.err.is_some());
}

#[test]
fn keys_must_start_a_word() {
    // "pid:" must not be read as "id:"
    let r = parse(b"pid:9 id:10 stat:DELIVRD");
    assert_eq!(r.id.as_deref(), Some("10"));
}

#[test]
fn format_round_trips_through_parse() {
    for st in [
        DeliveryState::Delivered,
        DeliveryState::Undeliverable,
        DeliveryState::Expired,
        DeliveryState::Rejected,
    ] {
        let t = format(
            "00ab12",
            st == DeliveryState::Delivered,
            "2611261120",
            "2611261121",
            st,
            "000",
        );
        assert!(t.ends_with("text:"));
        let r = parse(t.as_bytes());
        assert_eq!(r.id.as_deref(), Some("00ab12"));
        assert_eq!(r.stat, Some(st));
        assert_eq!(
            r.dlvrd.as_deref(),
            Some(if st == DeliveryState::Delivered {
                "001"
            } else {
                "000"
            })
        );
    }
}

#[test]
fn states_map_both_ways() {
    for v in 1..=9u8 {
        let s = DeliveryState::from_tlv(v).unwrap();
        assert_eq!(s.tlv(), v);
        assert_eq!(DeliveryState::from_stat(s.stat()), Some(s));
    }
    assert_eq!(DeliveryState::from_tlv(0), None);
    assert!(!DeliveryState::Enroute.is_final());
    assert!(DeliveryState::Delivered.is_final());
}

mod props {
    use super::*;
    use proptest::prelude::*;
    proptest! {
        #[test]
        fn never_panics(b in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = parse(&b);
        }
        #[test]
        fn id_and_stat_survive_any_text(id in "[0-9A-Fa-f]{1,20}", text in ".{0,80}") {
            let s = format!("id:{id} sub:001 dlvrd:001 submit date:2611261120 done date:2611261120 stat:DELIVRD err:000 text:{text}");
            let r = parse(s.as_bytes());
            prop_assert_eq!(r.id.as_deref(), Some(id.as_str()));
            prop_assert_eq!(r.stat, Some(DeliveryState::Delivered));
        }
    }
}
