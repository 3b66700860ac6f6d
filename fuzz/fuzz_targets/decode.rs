//! Fuzz the frame-isolating SMPP decoder: any byte stream, cut into reads at
//! positions the fuzzer chooses, must never panic, and must stop returning frames
//! after a bounded number of calls (no endless loop on the same input).
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use otpgw_proto::codec::SmppCodec;
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    let (cuts, stream) = data.split_at(data.len().min(4));
    let mut codec = SmppCodec::new(4096);
    let mut buf = BytesMut::new();
    let mut rest = stream;
    let mut i = 0;
    while !rest.is_empty() {
        let step = usize::from(cuts.get(i % cuts.len().max(1)).copied().unwrap_or(7)).max(1);
        i += 1;
        let (now, later) = rest.split_at(step.min(rest.len()));
        buf.extend_from_slice(now);
        rest = later;
        let mut frames = 0usize;
        while let Ok(Some(_)) = codec.decode(&mut buf) {
            frames += 1;
            assert!(frames <= 2 * stream.len() + 2, "decoder loops without consuming");
        }
    }
    let _ = codec.decode_eof(&mut buf);
});
