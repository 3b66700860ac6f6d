//! The async side of a session: a writer task that owns the socket's write half and
//! batches PDUs, and a reader built on [`crate::codec::SmppCodec`].
//!
//! Callers queue [`Command`]s on a bounded channel. The writer takes one, then every
//! other command already waiting (up to a byte budget), encodes them into one buffer
//! and issues a single `write_all`: under load many PDUs share one syscall, and no PDU
//! waits for a flush timer. A full channel makes the sender wait (back-pressure from a
//! slow peer); callers that must not wait use `try_send` and answer their peer.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::BytesMut;
use rusmpp::Command;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::codec::FramedRead;

use crate::codec::{SmppCodec, encode_command};

/// Stop batching once this many bytes are waiting to be written.
const BATCH_BYTES: usize = 64 * 1024;

/// Counters of a writer, to check batching in tests and benchmarks.
#[derive(Debug, Default)]
pub struct WriterStats {
    pub pdus: AtomicU64,
    pub writes: AtomicU64,
}

impl WriterStats {
    /// (PDUs written, write calls made).
    pub fn snapshot(&self) -> (u64, u64) {
        (
            self.pdus.load(Ordering::Relaxed),
            self.writes.load(Ordering::Relaxed),
        )
    }
}

/// The sending side of a writer.
pub type PduSender = mpsc::Sender<Command>;

/// Spawn the writer task. It ends when every sender is dropped (after writing what
/// was queued) or when the socket fails, and then shuts the write half down.
pub fn spawn_writer<W>(
    io: W,
    capacity: usize,
) -> (
    PduSender,
    Arc<WriterStats>,
    tokio::task::JoinHandle<std::io::Result<()>>,
)
where
    W: AsyncWrite + Unpin + Send + 'static,
{
    spawn_writer_with(io, capacity, BATCH_BYTES)
}

/// [`spawn_writer`] batching at most `batch_bytes` per write (0: one PDU per write,
/// as a simple client library does).
pub fn spawn_writer_with<W>(
    mut io: W,
    capacity: usize,
    batch_bytes: usize,
) -> (
    PduSender,
    Arc<WriterStats>,
    tokio::task::JoinHandle<std::io::Result<()>>,
)
where
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, mut rx) = mpsc::channel::<Command>(capacity);
    let stats = Arc::new(WriterStats::default());
    let st = stats.clone();
    let handle = tokio::spawn(async move {
        let mut buf = BytesMut::with_capacity(BATCH_BYTES);
        while let Some(first) = rx.recv().await {
            encode_command(&first, &mut buf);
            let mut n = 1u64;
            while buf.len() < batch_bytes {
                match rx.try_recv() {
                    Ok(c) => {
                        encode_command(&c, &mut buf);
                        n += 1;
                    }
                    Err(_) => break,
                }
            }
            let r = io.write_all(&buf).await;
            buf.clear();
            st.pdus.fetch_add(n, Ordering::Relaxed);
            st.writes.fetch_add(1, Ordering::Relaxed);
            r?;
        }
        let _ = io.shutdown().await;
        Ok(())
    });
    (tx, stats, handle)
}

/// A framed reader over the frame-isolating codec.
pub fn reader<R: AsyncRead>(io: R, max_frame: usize) -> FramedRead<R, SmppCodec> {
    FramedRead::with_capacity(io, SmppCodec::new(max_frame), 64 * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Frame;
    use futures_util::StreamExt;
    use rusmpp::{CommandStatus, Pdu};

    #[tokio::test]
    async fn many_pdus_share_one_write_and_arrive_in_order() {
        let (a, b) = tokio::io::duplex(1 << 20);
        let (tx, stats, handle) = spawn_writer(a, 2048);
        // Queue 1000 PDUs before the writer task gets to run.
        for seq in 1..=1000u32 {
            tx.try_send(Command::new(CommandStatus::EsmeRok, seq, Pdu::EnquireLink))
                .unwrap();
        }
        drop(tx);
        handle.await.unwrap().unwrap();
        let (pdus, writes) = stats.snapshot();
        assert_eq!(pdus, 1000);
        assert!(writes <= 2, "{writes} writes for 1000 PDUs");
        let mut rd = reader(b, 4096);
        for seq in 1..=1000u32 {
            match rd.next().await {
                Some(Ok(Frame::Command(c))) => assert_eq!(c.sequence_number(), seq),
                other => panic!("{other:?}"),
            }
        }
        assert!(rd.next().await.is_none(), "writer shut the stream down");
    }
}
