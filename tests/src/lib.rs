//! Crimson's server integration tests (in `tests/`), grouped by topic, and the README's
//! examples as doc tests.
//!
//! | file | topic |
//! |---|---|
//! | `bad_input.rs` | what a client sends that the server refuses, and how it says so |
//! | `lifecycle.rs` | how sessions start, end and are limited; setup errors |
//! | `extractors.rs` | handlers: extractors, split halves, raw payloads, panics in user code |
//! | `clusters.rs` | broadcasts, rooms, membership, slow consumers |
//! | `redis_cluster.rs` | many nodes as one through a real `redis-server` |
//! | `redis_acks.rs` | acknowledged broadcasts across nodes, through a real `redis-server` |
//! | `redis_sharded.rs` | many nodes as one through a real Redis Cluster (six servers), a failover |
//! | `redis_history.rs` | history in Redis: a client fails over to another node and recovers there |
//!
//! This library holds what they share: their message types ([`messages`]), recorders for the
//! config hooks and a bounded wait ([`support`]), a WebSocket client that writes frames
//! byte by byte ([`raw`]), for input no well-behaved client library would send, and a raw
//! client of the Crimson protocol ([`v1`]).

/// The README's examples compile (and those that can run, run).
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;

pub mod messages {
    //! The tests' own message types: a small JSON chat.

    use crimson_axum::CrimsonMessage;
    use serde::{Deserialize, Serialize};

    /// What a chat client sends: `{"text": "..."}`.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, CrimsonMessage)]
    #[crimson(codec = "json")]
    pub struct ChatMessage {
        /// The message text.
        pub text: String,
    }

    /// What the chat server sends: `{"text": "...", "from": "..."}`.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, CrimsonMessage)]
    #[crimson(codec = "json")]
    pub struct ChatResponse {
        /// The message text.
        pub text: String,
        /// Who sent it: a session id, or what the server wants to say about it.
        pub from: String,
    }

    /// A note of the recovery tests: `{"text": "..."}`, both ways.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, CrimsonMessage)]
    #[crimson(codec = "json")]
    pub struct Note {
        /// The note's text.
        pub text: String,
    }

    /// A note saying `text`.
    pub fn note(text: &str) -> Note {
        Note { text: text.into() }
    }

    impl ChatMessage {
        /// A message saying `text`.
        pub fn new(text: impl Into<String>) -> Self {
            Self { text: text.into() }
        }
    }

    impl ChatResponse {
        /// A response saying `text`, from `from`.
        pub fn new(text: impl Into<String>, from: impl Into<String>) -> Self {
            Self {
                text: text.into(),
                from: from.into(),
            }
        }
    }
}

pub mod v1 {
    //! A raw WebSocket client of the Crimson protocol (`crimson.v1`), frame by frame.

    use std::time::Duration;

    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;

    /// A raw client connection.
    pub type Ws = tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >;

    /// A raw client asking for `protocols` (`Sec-WebSocket-Protocol`); what the server chose.
    pub async fn connect_asking(url: &str, protocols: Option<&str>) -> (Ws, Option<String>) {
        let mut request = url.into_client_request().unwrap();
        if let Some(protocols) = protocols {
            request
                .headers_mut()
                .insert("sec-websocket-protocol", protocols.parse().unwrap());
        }
        let (ws, response) = tokio_tungstenite::connect_async(request).await.unwrap();
        let chosen = response
            .headers()
            .get("sec-websocket-protocol")
            .map(|v| v.to_str().unwrap().to_owned());
        (ws, chosen)
    }

    /// A raw client of `crimson.v1.json`.
    pub async fn connect(url: &str) -> Ws {
        connect_asking(url, Some("crimson.v1.json")).await.0
    }

    /// The epoch in a frame's header (`e=…`).
    pub fn epoch(frame: &str) -> String {
        let header = frame.split('\n').next().unwrap();
        header
            .split(' ')
            .find_map(|field| field.strip_prefix("e="))
            .unwrap()
            .to_owned()
    }

    /// The next frame, which must be a Text frame, within 5 s.
    pub async fn next_text(ws: &mut Ws) -> String {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => text.to_string(),
            other => panic!("expected a Text frame, got {other:?}"),
        }
    }
}

pub mod apps {
    //! The chat route most tests serve.

    use axum::Router;
    use crimson_axum::{ConfigName, CrimsonConfig, CrimsonLayer, CrimsonSession, RouterExt};

    use crate::messages::{ChatMessage, ChatResponse};

    /// The chat config's typed name.
    pub const CHAT: ConfigName<ChatMessage, ChatResponse> = ConfigName::new("chat");

    /// A chat session: every message is broadcast to the route's cluster, from this session's
    /// id. `"panic"` panics; `"skipped?"` answers (to this session only) how many messages
    /// were skipped as undecodable; `"bye"` returns.
    pub async fn chat(mut session: CrimsonSession<ChatMessage, ChatResponse>) {
        let from = session.id().to_string();
        while let Some(message) = session.recv().await {
            match message.text.as_str() {
                "panic" => panic!("asked to panic"),
                "bye" => return,
                "skipped?" => {
                    let skipped = session.skipped().to_string();
                    let _ = session.send(ChatResponse::new(skipped, "server")).await;
                }
                _ => {
                    let _ = session
                        .cluster()
                        .broadcast(&ChatResponse::new(message.text, from.clone()))
                        .await;
                }
            }
        }
    }

    /// [`chat`] at `/chat`, with `config` registered as [`CHAT`]; the layer too, for its
    /// cluster and shutdown handle.
    pub fn chat_app(config: CrimsonConfig<ChatMessage, ChatResponse>) -> (Router, CrimsonLayer) {
        let layer = CrimsonLayer::new().config(CHAT, config);
        let app = Router::new()
            .crimson("/chat", CHAT, chat)
            .layer(layer.clone());
        (app, layer)
    }
}

pub mod support {
    //! Recorders for the config hooks, and waits with a bound.

    use std::fmt;
    use std::future::Future;
    use std::sync::{Arc, Mutex, MutexGuard};
    use std::time::{Duration, Instant};

    use crimson_axum::sessions::SessionInfo;
    use crimson_axum::{CloseRecord, SessionError};
    use tokio::sync::Notify;

    /// How long any wait in these tests may take before it fails: long enough for a loaded
    /// two-core machine, short enough that a hang fails the test instead of the run.
    pub const BOUND: Duration = Duration::from_secs(10);

    /// Things that happened (hook calls, mostly), in order, with a way to wait for one.
    pub struct Events<T> {
        inner: Arc<(Mutex<Vec<T>>, Notify)>,
    }

    impl<T> Clone for Events<T> {
        fn clone(&self) -> Self {
            Self {
                inner: self.inner.clone(),
            }
        }
    }

    impl<T> Default for Events<T> {
        fn default() -> Self {
            Self {
                inner: Arc::new((Mutex::new(Vec::new()), Notify::new())),
            }
        }
    }

    impl<T: fmt::Debug> fmt::Debug for Events<T> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_list().entries(self.lock().iter()).finish()
        }
    }

    impl<T> Events<T> {
        /// No events yet.
        pub fn new() -> Self {
            Self::default()
        }

        fn lock(&self) -> MutexGuard<'_, Vec<T>> {
            self.inner.0.lock().unwrap_or_else(|e| e.into_inner())
        }

        /// Records one event and wakes the waiters.
        pub fn push(&self, event: T) {
            self.lock().push(event);
            self.inner.1.notify_waiters();
        }

        /// How many events so far.
        pub fn len(&self) -> usize {
            self.lock().len()
        }

        /// Whether none happened yet.
        pub fn is_empty(&self) -> bool {
            self.len() == 0
        }
    }

    impl<T: Clone + fmt::Debug> Events<T> {
        /// Every event so far.
        pub fn all(&self) -> Vec<T> {
            self.lock().clone()
        }

        /// Waits (at most [`BOUND`]) until `done` holds for the events; returns them.
        ///
        /// # Panics
        ///
        /// If it does not hold in time, naming `what` and showing the events.
        pub async fn wait_until(&self, what: &str, done: impl Fn(&[T]) -> bool) -> Vec<T> {
            let waited = tokio::time::timeout(BOUND, async {
                loop {
                    let changed = self.inner.1.notified();
                    tokio::pin!(changed);
                    changed.as_mut().enable();
                    {
                        let events = self.lock();
                        if done(&events) {
                            return events.clone();
                        }
                    }
                    changed.await;
                }
            })
            .await;
            match waited {
                Ok(events) => events,
                Err(_) => panic!("{what}: not within {BOUND:?}; events: {:?}", self.all()),
            }
        }

        /// Waits until there are at least `n` events; returns them.
        pub async fn wait_len(&self, n: usize) -> Vec<T> {
            self.wait_until(&format!("{n} event(s)"), |events| events.len() >= n)
                .await
        }
    }

    /// The sessions that ended, as `on_close` reports them.
    pub type Closes = Events<(SessionInfo, CloseRecord)>;

    /// The errors sessions met, as `on_error` reports them (as text).
    pub type Errors = Events<(SessionInfo, String)>;

    impl Events<(SessionInfo, CloseRecord)> {
        /// An `on_close` hook that records here.
        pub fn hook(&self) -> impl Fn(&SessionInfo, &CloseRecord) + Send + Sync + 'static {
            let events = self.clone();
            move |info, record| events.push((info.clone(), record.clone()))
        }

        /// The records so far, without the session facts.
        pub fn records(&self) -> Vec<CloseRecord> {
            self.all().into_iter().map(|(_, record)| record).collect()
        }

        /// Waits for the close record of the session with this path.
        pub async fn of_path(&self, path: &str) -> CloseRecord {
            let events = self
                .wait_until(&format!("a close on {path}"), |events| {
                    events.iter().any(|(info, _)| info.path == path)
                })
                .await;
            events
                .into_iter()
                .find(|(info, _)| info.path == path)
                .map(|(_, record)| record)
                .expect("waited for it")
        }
    }

    impl Events<(SessionInfo, String)> {
        /// An `on_error` hook that records here.
        pub fn hook(&self) -> impl Fn(&SessionInfo, &SessionError) + Send + Sync + 'static {
            let events = self.clone();
            move |info, err| events.push((info.clone(), err.to_string()))
        }

        /// The error texts so far.
        pub fn texts(&self) -> Vec<String> {
            self.all().into_iter().map(|(_, text)| text).collect()
        }
    }

    /// Checks `done` every 10 ms until it holds, for conditions no event announces; fails
    /// after [`BOUND`]. Returns how long it took.
    pub async fn eventually(what: &str, mut done: impl FnMut() -> bool) -> Duration {
        let start = Instant::now();
        while !done() {
            assert!(start.elapsed() < BOUND, "{what}: not within {BOUND:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        start.elapsed()
    }

    /// `future`, or a panic naming `what` after [`BOUND`].
    pub async fn bounded<F: Future>(what: &str, future: F) -> F::Output {
        match tokio::time::timeout(BOUND, future).await {
            Ok(output) => output,
            Err(_) => panic!("{what}: not within {BOUND:?}"),
        }
    }
}

pub mod raw {
    //! A WebSocket client that writes frames byte by byte, and plain HTTP requests: input no
    //! client library sends (bad close codes, broken frames, invalid UTF-8), and answers read
    //! as the bytes on the wire.

    use std::net::SocketAddr;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use crate::support::BOUND;

    /// Frame opcodes.
    pub mod op {
        /// Continuation.
        pub const CONTINUATION: u8 = 0x0;
        /// Text.
        pub const TEXT: u8 = 0x1;
        /// Binary.
        pub const BINARY: u8 = 0x2;
        /// Close.
        pub const CLOSE: u8 = 0x8;
        /// Ping.
        pub const PING: u8 = 0x9;
        /// Pong.
        pub const PONG: u8 = 0xA;
    }

    /// The mask every client frame here uses.
    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    /// The bytes of one frame: `fin` and `rsv1` bits, the opcode, the payload, masked as a
    /// client must (or not, to break that rule).
    pub fn frame(fin: bool, rsv1: bool, opcode: u8, payload: &[u8], masked: bool) -> Vec<u8> {
        let mut out = vec![(u8::from(fin) << 7) | (u8::from(rsv1) << 6) | opcode];
        let mask_bit = if masked { 0x80 } else { 0 };
        match payload.len() {
            len @ 0..=125 => out.push(mask_bit | len as u8),
            len @ 126..=0xffff => {
                out.push(mask_bit | 126);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            len => {
                out.push(mask_bit | 127);
                out.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        if masked {
            out.extend_from_slice(&MASK);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
        } else {
            out.extend_from_slice(payload);
        }
        out
    }

    /// A whole, masked frame: what a well-behaved client sends.
    pub fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
        frame(true, false, opcode, payload, true)
    }

    /// A close frame's payload: the code, then the reason.
    pub fn close_payload(code: u16, reason: &str) -> Vec<u8> {
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(reason.as_bytes());
        payload
    }

    /// A frame from the server.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Frame {
        /// The FIN bit.
        pub fin: bool,
        /// The opcode.
        pub opcode: u8,
        /// Whether the server masked it (it must not).
        pub masked: bool,
        /// The payload, unmasked.
        pub payload: Vec<u8>,
    }

    impl Frame {
        /// A close frame's code and reason; `None` if this is not a close frame or it has no
        /// code.
        pub fn close(&self) -> Option<(u16, String)> {
            if self.opcode != op::CLOSE || self.payload.len() < 2 {
                return None;
            }
            let code = u16::from_be_bytes([self.payload[0], self.payload[1]]);
            let reason = String::from_utf8(self.payload[2..].to_vec()).expect("a UTF-8 reason");
            Some((code, reason))
        }

        /// A text frame's text.
        pub fn text(&self) -> Option<&str> {
            (self.opcode == op::TEXT)
                .then(|| std::str::from_utf8(&self.payload).expect("UTF-8 text"))
        }
    }

    /// One WebSocket connection, written and read byte by byte.
    #[derive(Debug)]
    pub struct RawClient {
        tcp: TcpStream,
        /// Bytes read and not yet parsed.
        buf: Vec<u8>,
    }

    impl RawClient {
        /// Connects to `ws://{addr}{path}` and completes the handshake.
        ///
        /// # Panics
        ///
        /// If the server does not answer 101 (its answer is shown) within [`BOUND`].
        pub async fn connect(addr: SocketAddr, path: &str) -> Self {
            let mut tcp = TcpStream::connect(addr).await.expect("connect");
            tcp.set_nodelay(true).expect("nodelay");
            let request = format!(
                "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                 Sec-WebSocket-Version: 13\r\n\r\n"
            );
            tcp.write_all(request.as_bytes())
                .await
                .expect("send the handshake");
            let mut client = Self {
                tcp,
                buf: Vec::new(),
            };
            let head = tokio::time::timeout(BOUND, client.read_head())
                .await
                .expect("the handshake is answered in time");
            assert!(head.starts_with("HTTP/1.1 101"), "not upgraded: {head}");
            // The accept key for the RFC's sample key.
            assert!(
                head.to_ascii_lowercase()
                    .contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
                "{head}"
            );
            client
        }

        async fn read_head(&mut self) -> String {
            loop {
                if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                    self.buf.drain(..end + 4);
                    return head;
                }
                let mut chunk = [0u8; 4096];
                let n = self.tcp.read(&mut chunk).await.expect("read the answer");
                assert!(n > 0, "the connection ended during the handshake");
                self.buf.extend_from_slice(&chunk[..n]);
            }
        }

        /// Writes `bytes` as they are, in one write.
        pub async fn write(&mut self, bytes: &[u8]) {
            self.tcp.write_all(bytes).await.expect("write");
        }

        /// Writes `bytes`, tolerating a server that has already closed the connection (it may
        /// refuse a frame before the rest arrives).
        pub async fn write_lossy(&mut self, bytes: &[u8]) {
            let _ = self.tcp.write_all(bytes).await;
        }

        /// Sends one whole, masked frame.
        pub async fn send(&mut self, opcode: u8, payload: &[u8]) {
            self.write(&client_frame(opcode, payload)).await;
        }

        /// Sends a close frame with this code and reason.
        pub async fn send_close(&mut self, code: u16, reason: &str) {
            self.send(op::CLOSE, &close_payload(code, reason)).await;
        }

        /// The next frame from the server, or `None` once the connection has ended (EOF or
        /// reset).
        ///
        /// # Panics
        ///
        /// If nothing arrives within [`BOUND`].
        pub async fn next_frame(&mut self) -> Option<Frame> {
            tokio::time::timeout(BOUND, self.next_frame_unbounded())
                .await
                .expect("a frame or the end of the connection in time")
        }

        /// The next frame, waiting at most `timeout`: `Err` if none came.
        pub async fn next_frame_within(
            &mut self,
            timeout: Duration,
        ) -> Result<Option<Frame>, tokio::time::error::Elapsed> {
            tokio::time::timeout(timeout, self.next_frame_unbounded()).await
        }

        async fn next_frame_unbounded(&mut self) -> Option<Frame> {
            loop {
                if let Some((frame, used)) = parse(&self.buf) {
                    self.buf.drain(..used);
                    assert!(!frame.masked, "a server never masks its frames: {frame:?}");
                    return Some(frame);
                }
                let mut chunk = [0u8; 16 * 1024];
                match self.tcp.read(&mut chunk).await {
                    Ok(0) | Err(_) => {
                        assert!(
                            self.buf.is_empty(),
                            "the connection ended inside a frame: {:?}",
                            self.buf
                        );
                        return None;
                    }
                    Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                }
            }
        }

        /// Reads until the server's close frame, skipping pings and pongs; returns its code
        /// and reason.
        ///
        /// # Panics
        ///
        /// If a data frame or the end of the connection comes first.
        pub async fn recv_close(&mut self) -> (u16, String) {
            loop {
                let frame = self
                    .next_frame()
                    .await
                    .expect("a close frame before the connection ends");
                match frame.opcode {
                    op::PING | op::PONG => continue,
                    op::CLOSE => return frame.close().expect("a close frame with a code"),
                    _ => panic!("expected a close frame, got {frame:?}"),
                }
            }
        }

        /// Reads until the next text message, skipping pings and pongs.
        ///
        /// # Panics
        ///
        /// If something else comes first.
        pub async fn recv_text(&mut self) -> String {
            loop {
                let frame = self.next_frame().await.expect("a message");
                match frame.opcode {
                    op::PING | op::PONG => continue,
                    op::TEXT if frame.fin => return frame.text().expect("text").to_owned(),
                    _ => panic!("expected a text message, got {frame:?}"),
                }
            }
        }

        /// Reads until the connection ends, and returns the frames that came before.
        pub async fn recv_until_end(&mut self) -> Vec<Frame> {
            let mut frames = Vec::new();
            while let Some(frame) = self.next_frame().await {
                frames.push(frame);
            }
            frames
        }
    }

    /// A whole frame at the start of `buf`, and its length.
    fn parse(buf: &[u8]) -> Option<(Frame, usize)> {
        let [b0, b1, ..] = *buf else { return None };
        let masked = b1 & 0x80 != 0;
        let (len, mut at) = match b1 & 0x7f {
            126 => (
                usize::from(u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?)),
                4,
            ),
            127 => (
                usize::try_from(u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?)).ok()?,
                10,
            ),
            short => (usize::from(short), 2),
        };
        let mask = if masked {
            let mask: [u8; 4] = buf.get(at..at + 4)?.try_into().ok()?;
            at += 4;
            Some(mask)
        } else {
            None
        };
        let body = buf.get(at..at + len)?;
        let payload = match mask {
            Some(mask) => body
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ mask[i % 4])
                .collect(),
            None => body.to_vec(),
        };
        Some((
            Frame {
                fin: b0 & 0x80 != 0,
                opcode: b0 & 0x0f,
                masked,
                payload,
            },
            at + len,
        ))
    }

    /// Sends `request` (a whole HTTP/1.1 request, `Connection: close`) and returns the whole
    /// answer as text.
    ///
    /// # Panics
    ///
    /// If no whole answer comes within [`BOUND`].
    pub async fn http(addr: SocketAddr, request: &str) -> String {
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        tcp.write_all(request.as_bytes())
            .await
            .expect("send the request");
        let mut response = Vec::new();
        tokio::time::timeout(BOUND, tcp.read_to_end(&mut response))
            .await
            .expect("an answer in time")
            .expect("read the answer");
        String::from_utf8_lossy(&response).into_owned()
    }
}
