//! Frame-isolating SMPP codec.
//!
//! The stock rusmpp codec lets a bad frame corrupt the next one or end the stream.
//! This codec instead:
//! - reads the 4-byte `command_length` and checks it against a cap before buffering
//!   anything (a frame over the cap is skipped as it arrives, never allocated);
//! - cuts exactly one frame per PDU with `split_to`, so a body that is too short or
//!   leaves bytes over never touches the next PDU;
//! - turns every decode failure into a [`Frame::Malformed`] item carrying the command
//!   id and sequence number when they are readable, so the session can answer it and
//!   stay up.
//!
//! The only unrecoverable input is a `command_length` below the 16-byte header: the
//! stream can no longer be framed, so the item is marked `fatal` and the codec discards
//! everything after it.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use rusmpp::Command;
use rusmpp::decode::DecodeWithLength;
use rusmpp::encode::Length;
use rusmpp::encode::owned::Encode;
use tokio_util::codec::{Decoder, Encoder};

/// The SMPP header: command_length, command_id, command_status, sequence_number.
pub const HEADER_LEN: usize = 16;

/// Default cap on `command_length`: room for a full `short_message` plus TLVs.
pub const DEFAULT_MAX_FRAME: usize = 4096;

/// One item read from the wire.
#[derive(Debug)]
pub enum Frame {
    /// A well-formed PDU.
    Command(Box<Command>),
    /// A frame that could not be decoded; the session decides how to answer it.
    Malformed(Malformed),
}

/// A frame that failed to decode.
#[derive(Debug, Clone)]
pub struct Malformed {
    /// The command id, when the header was readable.
    pub command_id: Option<u32>,
    /// The command status, when the header was readable.
    pub command_status: Option<u32>,
    /// The sequence number, when the header was readable.
    pub sequence_number: Option<u32>,
    /// What was wrong.
    pub kind: MalformedKind,
    /// The body after the header of a malformed `deliver_sm` (empty otherwise), for
    /// the lenient receipt reader [`crate::pdu::lenient_deliver_sm`].
    pub body: Bytes,
}

impl Malformed {
    /// True when the stream can no longer be framed and the session must close.
    pub fn is_fatal(&self) -> bool {
        matches!(self.kind, MalformedKind::LengthBelowHeader { .. })
    }
}

/// Why a frame was malformed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MalformedKind {
    /// `command_length` smaller than the header: the stream cannot be framed any more.
    LengthBelowHeader { length: u32 },
    /// `command_length` above the configured cap; the frame is skipped unread.
    TooLong { length: u32, max: usize },
    /// The body did not decode as the PDU its command id names.
    Undecodable { reason: String },
    /// The PDU decoded but did not fill `command_length`.
    TrailingBytes { left: usize },
}

/// Errors the codec returns to the stream (only IO errors; bad input is an item).
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// The frame-isolating codec. See the module docs.
#[derive(Debug)]
pub struct SmppCodec {
    max_frame: usize,
    /// Bytes of an oversized frame still to be discarded.
    skip: usize,
    /// Set after a fatal item: everything after it is discarded.
    poisoned: bool,
}

impl SmppCodec {
    /// A codec that refuses frames longer than `max_frame` bytes (header included).
    pub fn new(max_frame: usize) -> Self {
        Self {
            max_frame: max_frame.max(HEADER_LEN),
            skip: 0,
            poisoned: false,
        }
    }

    /// The configured cap.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    fn discard_skipped(&mut self, src: &mut BytesMut) {
        let n = self.skip.min(src.len());
        src.advance(n);
        self.skip -= n;
    }
}

impl Default for SmppCodec {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME)
    }
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

impl Decoder for SmppCodec {
    type Item = Frame;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        if self.poisoned {
            src.clear();
            return Ok(None);
        }
        if self.skip > 0 {
            self.discard_skipped(src);
            if self.skip > 0 {
                return Ok(None);
            }
        }
        if src.len() < 4 {
            return Ok(None);
        }
        let length = be32(&src[..4]);
        let len = length as usize;
        if len < HEADER_LEN {
            // Unframeable: report what is readable and stop reading this stream.
            let command_id = (src.len() >= 8 && len >= 8).then(|| be32(&src[4..8]));
            self.poisoned = true;
            src.clear();
            return Ok(Some(Frame::Malformed(Malformed {
                command_id,
                command_status: None,
                sequence_number: None,
                kind: MalformedKind::LengthBelowHeader { length },
                body: Bytes::new(),
            })));
        }
        if len > self.max_frame {
            // Wait for the header so the answer can carry id and sequence number,
            // then skip the frame as it arrives without buffering it.
            if src.len() < HEADER_LEN {
                return Ok(None);
            }
            let item = Malformed {
                command_id: Some(be32(&src[4..8])),
                command_status: Some(be32(&src[8..12])),
                sequence_number: Some(be32(&src[12..16])),
                kind: MalformedKind::TooLong {
                    length,
                    max: self.max_frame,
                },
                body: Bytes::new(),
            };
            self.skip = len;
            self.discard_skipped(src);
            return Ok(Some(Frame::Malformed(item)));
        }
        if src.len() < len {
            src.reserve(len - src.len());
            return Ok(None);
        }
        let mut frame = src.split_to(len);
        let command_id = be32(&frame[4..8]);
        let command_status = be32(&frame[8..12]);
        let sequence_number = be32(&frame[12..16]);
        frame.advance(4);
        // Only receipts have a lenient second reader; keep a copy of their body only.
        let body_after_header = if command_id == crate::status::cmd::DELIVER_SM {
            Bytes::copy_from_slice(&frame[12..])
        } else {
            Bytes::new()
        };
        let malformed = |kind| {
            Frame::Malformed(Malformed {
                command_id: Some(command_id),
                command_status: Some(command_status),
                sequence_number: Some(sequence_number),
                kind,
                body: body_after_header.clone(),
            })
        };
        match Command::decode(&mut frame, len - 4) {
            Ok((command, _)) if frame.is_empty() => Ok(Some(Frame::Command(Box::new(command)))),
            Ok(_) => Ok(Some(malformed(MalformedKind::TrailingBytes {
                left: frame.len(),
            }))),
            Err(e) => Ok(Some(malformed(MalformedKind::Undecodable {
                reason: e.to_string(),
            }))),
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        match self.decode(buf)? {
            Some(frame) => Ok(Some(frame)),
            None => {
                // A partial frame at EOF is simply dropped with the connection.
                buf.clear();
                Ok(None)
            }
        }
    }
}

/// Encode a command (length prefix, then rusmpp's owned encoding) into `dst`.
pub fn encode_command(command: &Command, dst: &mut BytesMut) {
    let len = 4 + command.length();
    dst.reserve(len);
    dst.put_u32(len as u32);
    command.encode(dst);
}

/// Encode a header-only PDU (error responses, generic_nack) into `dst`.
pub fn encode_header(command_id: u32, status: u32, sequence_number: u32, dst: &mut BytesMut) {
    dst.reserve(HEADER_LEN);
    dst.put_u32(HEADER_LEN as u32);
    dst.put_u32(command_id);
    dst.put_u32(status);
    dst.put_u32(sequence_number);
}

impl Encoder<&Command> for SmppCodec {
    type Error = CodecError;
    fn encode(&mut self, item: &Command, dst: &mut BytesMut) -> Result<(), CodecError> {
        encode_command(item, dst);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
