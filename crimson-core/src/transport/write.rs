//! The write side of a connection: frames queued as bytes, written with vectored writes.
//!
//! Small frames are copied into one staging buffer; a large payload (or a frame built once
//! and shared by every recipient of a broadcast) is queued as the shared bytes it already is,
//! so nothing large is copied per recipient. Pongs wait in a short queue of their own and go
//! out at the next frame boundary; past [`MAX_PONGS`] unsent pongs the oldest is dropped (RFC
//! 6455 §5.5.3 allows answering only the latest ping), so a ping flood from a peer that does
//! not read costs a few kilobytes, not a buffer per ping. An idle connection keeps no buffers.

use std::collections::VecDeque;
use std::fmt;
use std::hash::BuildHasher;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;

use super::deflate::Deflater;
use super::frame::{self, opcode, MAX_CONTROL_PAYLOAD, MAX_HEADER};
use super::Role;
use crate::close::CloseCode;
use crate::message::FrameKind;

/// Payloads up to this size are copied into the staging buffer; larger ones are queued as
/// their own (shared) bytes.
const COPY_MAX: usize = 1024;
/// How many pieces one vectored write takes at most.
const MAX_SLICES: usize = 64;
/// The largest staging buffer kept for reuse on a thread.
const SPARE_MAX: usize = 64 << 10;

thread_local! {
    /// An emptied staging buffer, lent to the next connection of the thread that queues a
    /// frame: sending costs no allocation, and an idle connection still keeps no buffer.
    static SPARE: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}
/// How many pongs may wait unsent; a newer one pushes the oldest out.
pub(crate) const MAX_PONGS: usize = 32;

/// A queued piece of bytes.
struct Chunk {
    bytes: Bytes,
    /// Whether a frame starts at its first byte (a pong may go before it).
    frame_start: bool,
    /// Whether it is a pong (which does not count in the stream positions below).
    pong: bool,
}

/// Whether the connection may still send data frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closing {
    Open,
    /// A close frame is queued (or written): nothing more may be sent.
    CloseQueued,
}

/// A message the connection may no longer send: a close frame went before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the connection is closing: no more messages can be sent")]
pub struct AfterClose;

/// The write side of one connection.
pub(crate) struct Writer {
    role: Role,
    chunks: VecDeque<Chunk>,
    /// Bytes of `chunks[0]` already written.
    head: usize,
    /// Small frames, after every chunk.
    staging: Vec<u8>,
    /// Bytes of `staging` already written (only once `chunks` is empty).
    staged_written: usize,
    /// Bytes queued and not yet written.
    queued: usize,
    /// Pong frames not yet queued, oldest first.
    pongs: VecDeque<Bytes>,
    closing: Closing,
    deflater: Option<Deflater>,
    /// Masks for a client's frames.
    masks: Option<(std::collections::hash_map::RandomState, u64)>,
    /// Where each data message not yet begun starts, in the stream of bytes queued (pongs
    /// aside), so a client can tell which messages never left: kept for clients only.
    starts: Option<VecDeque<u64>>,
    /// Bytes queued so far, pongs aside.
    queued_total: u64,
    /// Bytes written so far, pongs aside.
    written_total: u64,
}

impl fmt::Debug for Writer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Writer")
            .field("role", &self.role)
            .field("queued", &self.queued)
            .field("pongs", &self.pongs.len())
            .field("closing", &self.closing)
            .field("deflater", &self.deflater)
            .finish()
    }
}

impl Writer {
    pub(crate) fn new(role: Role, deflater: Option<Deflater>) -> Self {
        Self {
            role,
            chunks: VecDeque::new(),
            head: 0,
            staging: Vec::new(),
            staged_written: 0,
            queued: 0,
            pongs: VecDeque::new(),
            closing: Closing::Open,
            deflater,
            masks: (role == Role::Client)
                .then(|| (std::collections::hash_map::RandomState::new(), 0)),
            starts: (role == Role::Client).then(VecDeque::new),
            queued_total: 0,
            written_total: 0,
        }
    }

    /// Bytes queued and not yet written (a pending pong not counted).
    pub(crate) fn queued(&self) -> usize {
        self.queued
    }

    /// Whether nothing waits to be written.
    pub(crate) fn is_empty(&self) -> bool {
        self.queued == 0 && self.pongs.is_empty()
    }

    /// Whether a close frame is queued or written.
    pub(crate) fn is_closing(&self) -> bool {
        self.closing == Closing::CloseQueued
    }

    /// The negotiated compressor, if any.
    pub(crate) fn deflater(&self) -> Option<&Deflater> {
        self.deflater.as_ref()
    }

    fn next_mask(&mut self) -> Option<[u8; 4]> {
        let (state, counter) = self.masks.as_mut()?;
        *counter += 1;
        let bits = state.hash_one(*counter);
        Some((bits as u32).to_ne_bytes())
    }

    /// Queues one message, compressing it when permessage-deflate was negotiated and it is
    /// large enough. `shared` is the payload as shared bytes, when it has them (queued as they
    /// are instead of copied, for large payloads on a server).
    pub(crate) fn send(
        &mut self,
        kind: FrameKind,
        payload: &[u8],
        shared: Option<&Bytes>,
    ) -> Result<(), AfterClose> {
        if self.closing != Closing::Open {
            return Err(AfterClose);
        }
        let op = match kind {
            FrameKind::Text => opcode::TEXT,
            FrameKind::Binary => opcode::BINARY,
        };
        if let Some(compressed) = self.deflater.as_mut().and_then(|d| d.compress(payload)) {
            self.frame(op, true, &compressed, None);
            return Ok(());
        }
        self.frame(op, false, payload, shared);
        Ok(())
    }

    /// Queues one message as it is, without trying to compress it.
    pub(crate) fn send_uncompressed(
        &mut self,
        kind: FrameKind,
        payload: &[u8],
        shared: Option<&Bytes>,
    ) -> Result<(), AfterClose> {
        if self.closing != Closing::Open {
            return Err(AfterClose);
        }
        let op = match kind {
            FrameKind::Text => opcode::TEXT,
            FrameKind::Binary => opcode::BINARY,
        };
        self.frame(op, false, payload, shared);
        Ok(())
    }

    /// Queues a payload that was already compressed (shared by the recipients of a broadcast).
    pub(crate) fn send_compressed(
        &mut self,
        kind: FrameKind,
        compressed: &Bytes,
    ) -> Result<(), AfterClose> {
        if self.closing != Closing::Open {
            return Err(AfterClose);
        }
        let op = match kind {
            FrameKind::Text => opcode::TEXT,
            FrameKind::Binary => opcode::BINARY,
        };
        self.frame(op, true, compressed, Some(compressed));
        Ok(())
    }

    /// Queues one frame: the header, then the payload (copied, or queued as shared bytes).
    fn frame(&mut self, op: u8, rsv1: bool, payload: &[u8], shared: Option<&Bytes>) {
        if let Some(starts) = &mut self.starts {
            if !frame::opcode::is_control(op) {
                starts.push_back(self.queued_total);
            }
        }
        let mask = self.next_mask();
        let mut header = [0; MAX_HEADER];
        let n = frame::write(&mut header, true, rsv1, op, mask, payload.len());
        let copied = mask.is_some() || shared.is_none() || payload.len() <= COPY_MAX;
        let need = n + if copied { payload.len() } else { 0 };
        if self.staging.capacity() == 0 {
            self.staging = SPARE.with(std::cell::Cell::take);
            self.staging.clear();
        }
        self.staging.reserve(need);
        self.staging.extend_from_slice(&header[..n]);
        self.queued += n + payload.len();
        self.queued_total += (n + payload.len()) as u64;
        match (mask, shared) {
            (None, Some(bytes)) if payload.len() > COPY_MAX => {
                self.seal_staging(true);
                self.chunks.push_back(Chunk {
                    bytes: bytes.clone(),
                    frame_start: false,
                    pong: false,
                });
            }
            (mask, _) => {
                let at = self.staging.len();
                self.staging.extend_from_slice(payload);
                if let Some(mask) = mask {
                    frame::apply_mask(&mut self.staging[at..], mask, 0);
                }
            }
        }
    }

    /// Moves the staging buffer into the chunk queue (it starts at a frame boundary).
    fn seal_staging(&mut self, frame_start: bool) {
        if self.staging.len() > self.staged_written {
            let started = self.staged_written > 0;
            let bytes = if self.staging.len() - self.staged_written <= 4096 {
                // A few small frames (and a header): copied, so the buffer is kept for reuse.
                let bytes = Bytes::copy_from_slice(&self.staging[self.staged_written..]);
                self.staging.clear();
                bytes
            } else {
                let mut bytes = Bytes::from(std::mem::take(&mut self.staging));
                if started {
                    // Only happens when nothing else is queued: go on where the write stopped.
                    bytes = bytes.slice(self.staged_written..);
                }
                bytes
            };
            self.staged_written = 0;
            self.chunks.push_back(Chunk {
                bytes,
                frame_start: frame_start && !started,
                pong: false,
            });
        }
    }

    /// Answers a ping; past [`MAX_PONGS`] unsent pongs the oldest is dropped.
    pub(crate) fn pong(&mut self, payload: &[u8]) {
        if self.closing != Closing::Open {
            return;
        }
        let payload = &payload[..payload.len().min(MAX_CONTROL_PAYLOAD)];
        let mask = self.next_mask();
        let mut header = [0; MAX_HEADER];
        let n = frame::write(&mut header, true, false, opcode::PONG, mask, payload.len());
        let mut bytes = Vec::with_capacity(n + payload.len());
        bytes.extend_from_slice(&header[..n]);
        bytes.extend_from_slice(payload);
        if let Some(mask) = mask {
            frame::apply_mask(&mut bytes[n..], mask, 0);
        }
        if self.pongs.len() >= MAX_PONGS {
            self.pongs.pop_front();
        }
        self.pongs.push_back(bytes.into());
    }

    /// Queues a ping.
    pub(crate) fn ping(&mut self, payload: &[u8]) {
        if self.closing != Closing::Open {
            return;
        }
        self.control(opcode::PING, payload);
    }

    fn control(&mut self, op: u8, payload: &[u8]) {
        let payload = &payload[..payload.len().min(MAX_CONTROL_PAYLOAD)];
        self.frame(op, false, payload, None);
    }

    /// Queues a close frame after what is queued. Nothing more may be sent after it.
    pub(crate) fn close(&mut self, code: CloseCode, reason: &str) {
        if self.closing != Closing::Open {
            return;
        }
        let mut payload = [0; MAX_CONTROL_PAYLOAD];
        payload[..2].copy_from_slice(&code.as_u16().to_be_bytes());
        let reason = crate::close::truncate_reason(reason);
        let len = 2 + reason.len();
        payload[2..len].copy_from_slice(reason.as_bytes());
        self.control(opcode::CLOSE, &payload[..len]);
        self.closing = Closing::CloseQueued;
    }

    /// Discards what is queued and not yet begun (a frame half written is finished first),
    /// then queues a close frame. Returns how many bytes were discarded.
    pub(crate) fn close_now(&mut self, code: CloseCode, reason: &str) -> usize {
        let discarded = self.discard();
        self.close(code, reason);
        discarded
    }

    /// Discards every queued byte not yet begun, keeping only the rest of a frame that is half
    /// written (so the stream stays well formed).
    fn discard(&mut self) -> usize {
        let before = self.queued;
        let mut kept: VecDeque<Chunk> = VecDeque::new();
        let mut kept_bytes = 0;
        if self.head > 0 || self.staged_written > 0 {
            // Keep chunks up to the next frame start.
            if self.chunks.is_empty() {
                // The staging buffer is half written: it may hold several frames; keep them
                // all rather than parse them (a few small frames at most).
                kept_bytes = self.staging.len() - self.staged_written;
            } else {
                let mut first = true;
                while let Some(chunk) = self.chunks.pop_front() {
                    if !first && chunk.frame_start {
                        break;
                    }
                    kept_bytes += chunk.bytes.len() - if first { self.head } else { 0 };
                    first = false;
                    kept.push_back(chunk);
                }
                self.staging.clear();
                self.staged_written = 0;
            }
        } else {
            self.staging.clear();
            self.staged_written = 0;
        }
        self.chunks = kept;
        self.queued = kept_bytes;
        let discarded = before - kept_bytes;
        self.queued_total -= discarded as u64;
        if let Some(starts) = &mut self.starts {
            let end = self.queued_total;
            starts.retain(|&at| at < end);
        }
        discarded
    }

    /// Writes what is queued until all of it is written or the socket is full.
    pub(crate) fn poll_write<IO: AsyncWrite + Unpin + ?Sized>(
        &mut self,
        io: &mut IO,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            // Pongs go out at the next frame boundary, in order.
            if !self.pongs.is_empty() && self.at_boundary() {
                while let Some(pong) = self.pongs.pop_back() {
                    self.queued += pong.len();
                    self.chunks.push_front(Chunk {
                        bytes: pong,
                        frame_start: true,
                        pong: true,
                    });
                }
            }
            if self.queued == 0 {
                self.give_back();
                return Poll::Ready(Ok(()));
            }
            let written = {
                let mut slices = [IoSlice::new(&[]); MAX_SLICES];
                let mut count = 0;
                for (i, chunk) in self.chunks.iter().enumerate().take(MAX_SLICES - 1) {
                    let start = if i == 0 { self.head } else { 0 };
                    slices[count] = IoSlice::new(&chunk.bytes[start..]);
                    count += 1;
                }
                // The staging buffer comes after every chunk.
                if count == self.chunks.len() && self.staging.len() > self.staged_written {
                    slices[count] = IoSlice::new(&self.staging[self.staged_written..]);
                    count += 1;
                }
                let slices = &slices[..count];
                let written = if slices.len() == 1 || !io.is_write_vectored() {
                    ready!(Pin::new(&mut *io).poll_write(cx, &slices[0]))?
                } else {
                    ready!(Pin::new(&mut *io).poll_write_vectored(cx, slices))?
                };
                if written == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                written
            };
            self.advance(written);
        }
    }

    /// How many data messages had a first byte written since the last call (clients only):
    /// the others queued have not left, and could go out on another connection instead.
    pub(crate) fn take_begun(&mut self) -> usize {
        let Some(starts) = &mut self.starts else {
            return 0;
        };
        let mut begun = 0;
        while starts.front().is_some_and(|&at| at < self.written_total) {
            starts.pop_front();
            begun += 1;
        }
        begun
    }

    /// Whether the next byte to write starts a frame.
    fn at_boundary(&self) -> bool {
        match self.chunks.front() {
            Some(chunk) => self.head == 0 && chunk.frame_start,
            None => self.staged_written == 0,
        }
    }

    fn advance(&mut self, mut written: usize) {
        self.queued -= written;
        while written > 0 {
            match self.chunks.front() {
                Some(chunk) => {
                    let left = chunk.bytes.len() - self.head;
                    let step = written.min(left);
                    if !chunk.pong {
                        self.written_total += step as u64;
                    }
                    if written >= left {
                        written -= left;
                        self.head = 0;
                        self.chunks.pop_front();
                    } else {
                        self.head += written;
                        written = 0;
                    }
                }
                None => {
                    self.staged_written += written;
                    self.written_total += written as u64;
                    written = 0;
                    if self.staged_written == self.staging.len() {
                        self.staging.clear();
                        self.staged_written = 0;
                    }
                }
            }
        }
    }

    /// Gives back the memory of an emptied queue: an idle connection keeps no buffers (its
    /// staging buffer goes to the thread's spare, for the next connection that sends).
    fn give_back(&mut self) {
        if self.staging.capacity() > 0 {
            let staging = std::mem::take(&mut self.staging);
            if staging.capacity() <= SPARE_MAX {
                SPARE.with(|spare| {
                    let kept = spare.take();
                    // Keep the larger of the two.
                    spare.set(if kept.capacity() >= staging.capacity() {
                        kept
                    } else {
                        staging
                    });
                });
            }
        }
        if self.chunks.capacity() > 0 {
            self.chunks = VecDeque::new();
        }
        if self.pongs.capacity() > 0 {
            self.pongs = VecDeque::new();
        }
    }

    /// Writes everything, then flushes the socket.
    pub(crate) fn poll_flush<IO: AsyncWrite + Unpin + ?Sized>(
        &mut self,
        io: &mut IO,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        ready!(self.poll_write(io, cx))?;
        Pin::new(io).poll_flush(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::read::{Incoming, Reader};
    use crate::PayloadRef;

    /// An `AsyncWrite` that takes at most `step` bytes per write.
    struct Trickle {
        out: Vec<u8>,
        step: usize,
        calls: usize,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.calls += 1;
            let n = buf.len().min(self.step);
            self.out.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            self.calls += 1;
            let mut left = self.step;
            let mut n = 0;
            for buf in bufs {
                let take = buf.len().min(left);
                self.out.extend_from_slice(&buf[..take]);
                left -= take;
                n += take;
                if left == 0 {
                    break;
                }
            }
            Poll::Ready(Ok(n))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn drain(writer: &mut Writer, step: usize) -> Vec<u8> {
        let mut io = Trickle {
            out: Vec::new(),
            step,
            calls: 0,
        };
        let waker = futures_noop();
        let mut cx = Context::from_waker(&waker);
        assert!(writer.poll_flush(&mut io, &mut cx).is_ready());
        io.out
    }

    fn futures_noop() -> std::task::Waker {
        std::task::Waker::noop().clone()
    }

    #[derive(Debug, PartialEq)]
    enum Got {
        Text(String),
        Binary(usize),
        Ping,
        Pong(Vec<u8>),
        Close(u16, String),
    }

    fn parse(bytes: &[u8], role_of_reader: Role) -> Vec<Got> {
        let mut reader = Reader::new(role_of_reader, 1 << 20, None, None);
        let mut got = Vec::new();
        let mut bytes = bytes.to_vec();
        reader
            .feed(&mut bytes, usize::MAX, &mut |incoming| {
                got.push(match incoming {
                    Incoming::Message(PayloadRef::Text(t)) => Got::Text(t.into()),
                    Incoming::Message(PayloadRef::Binary(b)) => Got::Binary(b.len()),
                    Incoming::Ping(_) => Got::Ping,
                    Incoming::Pong(p) => Got::Pong(p.to_vec()),
                    Incoming::Close(c) => {
                        let (code, reason) = c.unwrap();
                        Got::Close(code.as_u16(), reason.into())
                    }
                });
            })
            .unwrap();
        got
    }

    #[test]
    fn small_and_large_frames_in_order_through_any_write_size() {
        for role in [Role::Server, Role::Client] {
            for step in [1, 3, 100, 1 << 20] {
                let mut writer = Writer::new(role, None);
                let big = Bytes::from(vec![7u8; 5000]);
                writer.send(FrameKind::Text, b"one", None).unwrap();
                writer.send(FrameKind::Binary, &big, Some(&big)).unwrap();
                writer.send(FrameKind::Text, b"three", None).unwrap();
                writer.close(CloseCode::NORMAL, "bye");
                assert_eq!(writer.send(FrameKind::Text, b"late", None), Err(AfterClose));
                let out = drain(&mut writer, step);
                let peer = if role == Role::Server {
                    Role::Client
                } else {
                    Role::Server
                };
                assert_eq!(
                    parse(&out, peer),
                    vec![
                        Got::Text("one".into()),
                        Got::Binary(5000),
                        Got::Text("three".into()),
                        Got::Close(1000, "bye".into())
                    ],
                    "{role:?} step {step}"
                );
                assert!(writer.is_empty());
                assert_eq!(writer.staging.capacity(), 0);
            }
        }
    }

    #[test]
    fn pongs_are_bounded_and_wait_for_a_frame_boundary() {
        let mut writer = Writer::new(Role::Server, None);
        let big = Bytes::from(vec![1u8; 3000]);
        writer.send(FrameKind::Binary, &big, Some(&big)).unwrap();
        // Half of the big frame goes out, then a thousand pings arrive.
        let mut io = Trickle {
            out: Vec::new(),
            step: 1500,
            calls: 0,
        };
        let waker = futures_noop();
        let mut cx = Context::from_waker(&waker);
        // One write of 1500 bytes, then the socket is full.
        {
            struct Once<'a>(&'a mut Trickle, bool);
            impl AsyncWrite for Once<'_> {
                fn poll_write(
                    mut self: Pin<&mut Self>,
                    cx: &mut Context<'_>,
                    buf: &[u8],
                ) -> Poll<io::Result<usize>> {
                    if self.1 {
                        return Poll::Pending;
                    }
                    self.1 = true;
                    Pin::new(&mut *self.0).poll_write(cx, buf)
                }
                fn poll_write_vectored(
                    mut self: Pin<&mut Self>,
                    cx: &mut Context<'_>,
                    bufs: &[IoSlice<'_>],
                ) -> Poll<io::Result<usize>> {
                    if self.1 {
                        return Poll::Pending;
                    }
                    self.1 = true;
                    Pin::new(&mut *self.0).poll_write_vectored(cx, bufs)
                }
                fn is_write_vectored(&self) -> bool {
                    true
                }
                fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
                    Poll::Ready(Ok(()))
                }
                fn poll_shutdown(
                    self: Pin<&mut Self>,
                    _: &mut Context<'_>,
                ) -> Poll<io::Result<()>> {
                    Poll::Ready(Ok(()))
                }
            }
            let mut once = Once(&mut io, false);
            assert!(writer.poll_write(&mut once, &mut cx).is_pending());
        }
        for n in 0..1000u32 {
            writer.pong(&n.to_be_bytes());
        }
        let mut rest = drain(&mut writer, 1 << 20);
        let mut out = std::mem::take(&mut io.out);
        out.append(&mut rest);
        let mut expected = vec![Got::Binary(3000)];
        expected
            .extend((1000 - MAX_PONGS as u32..1000).map(|n| Got::Pong(n.to_be_bytes().to_vec())));
        assert_eq!(parse(&out, Role::Client), expected);
    }

    #[test]
    fn close_now_discards_what_has_not_begun() {
        let mut writer = Writer::new(Role::Server, None);
        for _ in 0..10 {
            writer.send(FrameKind::Text, b"queued", None).unwrap();
        }
        let discarded = writer.close_now(CloseCode::POLICY, "slow consumer");
        assert_eq!(discarded, 10 * 8);
        let out = drain(&mut writer, 1 << 20);
        assert_eq!(
            parse(&out, Role::Client),
            vec![Got::Close(1008, "slow consumer".into())]
        );
    }

    #[test]
    fn compressed_when_negotiated() {
        use crate::transport::deflate::{self, Deflate};
        let (agreed, _) =
            deflate::negotiate(&Deflate::new().min_size(16), ["permessage-deflate"]).unwrap();
        let mut writer = Writer::new(Role::Server, Some(Deflater::new(&agreed, true)));
        let text = "a chat message, a chat message, a chat message";
        writer.send(FrameKind::Text, text.as_bytes(), None).unwrap();
        writer.send(FrameKind::Text, b"tiny", None).unwrap();
        let out = drain(&mut writer, 1 << 20);
        assert!(out.len() < text.len(), "compressed: {}", out.len());
        // The first frame has RSV1 set, the second (under min_size) not.
        assert_eq!(out[0] & 0x40, 0x40);
        let mut reader = Reader::new(
            Role::Client,
            1 << 20,
            Some(crate::transport::deflate::Inflater::new(&agreed, false)),
            None,
        );
        let mut got = Vec::new();
        let mut bytes = out.clone();
        reader
            .feed(&mut bytes, usize::MAX, &mut |incoming| {
                if let Incoming::Message(PayloadRef::Text(t)) = incoming {
                    got.push(t.to_owned());
                }
            })
            .unwrap();
        assert_eq!(got, vec![text.to_owned(), "tiny".to_owned()]);
    }
}
