//! Requests and their answers, both ways, over the Crimson protocol (`crimson.v1`,
//! `docs/protocol.md`): what a handler receives ([`Incoming`], [`Request`]) and what a session
//! asks its client ([`CrimsonSession::request`](crate::CrimsonSession::request)).

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

use crimson_core::protocol::{self, Kind};
use crimson_core::session::Outgoing;
use crimson_core::{CrimsonMessage, CrimsonRequest, DecodeError, FrameKind, Payload};
use tokio::sync::oneshot;

use crate::engine::outbox::OutboxSender;
use crate::error::SessionSendError;

/// What a handler receives from its client: a message, or a request to answer.
#[derive(Debug)]
pub enum Incoming<Up> {
    /// A message.
    Message(Up),
    /// A request: answer it with [`Request::respond`] (or [`Request::reject`]).
    Request(Request<Up>),
}

impl<Up> Incoming<Up> {
    /// The message or the request's value. A request taken this way is answered for the
    /// handler, with an error (`500`, "not answered").
    pub fn into_value(self) -> Up {
        match self {
            Self::Message(up) => up,
            Self::Request(request) => request.into_value(),
        }
    }
}

/// A request from the client. Answer it once with [`respond`](Self::respond) or
/// [`reject`](Self::reject), or take it apart with [`into_parts`](Self::into_parts) to keep
/// the value and answer later through its [`Responder`]. Left unanswered, it is answered for
/// you with an error (code `500`, "not answered"), so a client never waits for an answer that
/// will not come.
pub struct Request<Up> {
    value: Up,
    responder: Responder<Up>,
}

/// Answers one request, once. Dropped unanswered, it answers with an error (code `500`,
/// "not answered").
pub struct Responder<Up> {
    id: u64,
    reply: Option<Reply>,
    _up: std::marker::PhantomData<fn() -> Up>,
}

/// Where and how a request's answer goes.
pub(crate) struct Reply {
    pub(crate) outbox: OutboxSender,
    /// The codec's token the connection chose (`None`: each type's default).
    pub(crate) token: Option<&'static str>,
    /// The frame kind of the connection's codec (an error's text travels in it).
    pub(crate) frame: FrameKind,
}

impl<Up: fmt::Debug> fmt::Debug for Request<Up> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("id", &self.responder.id)
            .field("value", &self.value)
            .finish()
    }
}

impl<Up> fmt::Debug for Responder<Up> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Responder")
            .field("id", &self.id)
            .field("answered", &self.reply.is_none())
            .finish()
    }
}

/// The code an unanswered request is answered with.
pub const NOT_ANSWERED: u16 = 500;

impl<Up> Request<Up> {
    pub(crate) fn new(value: Up, id: u64, reply: Reply) -> Self {
        Self {
            value,
            responder: Responder {
                id,
                reply: Some(reply),
                _up: std::marker::PhantomData,
            },
        }
    }

    /// What the client asked.
    pub fn value(&self) -> &Up {
        &self.value
    }

    /// The request's id, as the client chose it.
    pub fn id(&self) -> u64 {
        self.responder.id
    }

    /// The value and what answers it.
    pub fn into_parts(self) -> (Up, Responder<Up>) {
        (self.value, self.responder)
    }

    /// The value, giving up on answering: the client gets an error (`500`, "not answered").
    pub fn into_value(self) -> Up {
        self.value
    }

    /// Answers with an error: see [`Responder::reject`].
    pub fn reject(self, code: u16, message: &str) -> Result<(), SessionSendError> {
        self.responder.reject(code, message)
    }
}

impl<Up: CrimsonRequest> Request<Up> {
    /// Answers with `response`, in the codec the connection chose.
    pub fn respond(self, response: Up::Response) -> Result<(), SessionSendError> {
        self.responder.respond(response)
    }
}

impl<Up> Responder<Up> {
    /// The request's id, as the client chose it.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Answers with an error: `code` (`4000`–`4999` are the application's; `docs/protocol.md`
    /// lists the others) and a message for the client, cut to 1 KiB.
    pub fn reject(mut self, code: u16, message: &str) -> Result<(), SessionSendError> {
        let reply = self.take_reply();
        let payload = protocol::error(self.id, code, message, reply.frame);
        Ok(reply.outbox.try_push(Outgoing::Single(payload)).map(drop)?)
    }

    fn take_reply(&mut self) -> Reply {
        self.reply
            .take()
            .unwrap_or_else(|| unreachable!("answered only by methods that consume"))
    }
}

impl<Up: CrimsonRequest> Responder<Up> {
    /// Answers with `response`, in the codec the connection chose.
    pub fn respond(mut self, response: Up::Response) -> Result<(), SessionSendError> {
        let reply = self.take_reply();
        let codec = crimson_core::codec_index::<Up::Response>(reply.token);
        let body = match response.encode_in(codec) {
            Ok(body) => body,
            Err(err) => {
                // The client still gets an answer.
                let text = format!("the response did not encode: {err}");
                let payload = protocol::error(self.id, 500, &text, reply.frame);
                let _ = reply.outbox.try_push(Outgoing::Single(payload));
                return Err(err.into());
            }
        };
        let payload = protocol::write(Kind::Response { id: self.id }, &body);
        Ok(reply.outbox.try_push(Outgoing::Single(payload)).map(drop)?)
    }
}

impl<Up> Drop for Responder<Up> {
    fn drop(&mut self) {
        if let Some(reply) = self.reply.take() {
            let payload = protocol::error(self.id, NOT_ANSWERED, "not answered", reply.frame);
            let _ = reply.outbox.try_push(Outgoing::Single(payload));
        }
    }
}

/// Why a request to the client got no answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The client did not ask for the Crimson protocol (`crimson.v1`), or the config does not
    /// speak it ([`CrimsonConfig::protocol`](crate::CrimsonConfig::protocol)): requests cannot
    /// travel.
    #[error("the client does not speak the Crimson protocol (crimson.v1): requests cannot be sent to it")]
    NoProtocol,
    /// No answer within the timeout.
    #[error("no answer within {0:?}")]
    Timeout(std::time::Duration),
    /// The session ended before the answer came.
    #[error("the session ended before the client answered")]
    Disconnected,
    /// The client answered with an error.
    #[error("the client refused the request ({code}): {message}")]
    Rejected {
        /// Its code.
        code: u16,
        /// Its message.
        message: String,
    },
    /// The answer did not decode as the request's response type.
    #[error("the answer did not decode: {0}")]
    Decode(#[source] DecodeError),
    /// As many requests as the config allows wait for answers
    /// ([`CrimsonConfig::max_open_requests`](crate::CrimsonConfig::max_open_requests)).
    #[error("{0} requests already wait for the client's answers")]
    TooManyOpen(usize),
    /// The request could not be queued.
    #[error(transparent)]
    Send(#[from] SessionSendError),
}

/// What the client answered: the response's body, or an error's code and text.
pub(crate) type Answer = crimson_core::session::Answer;

/// A session as its cluster holds it: its outgoing queue, and its requests to its client (an
/// acknowledged broadcast asks through it).
pub(crate) struct SessionSink {
    pub(crate) queue: std::sync::Arc<dyn crimson_core::session::Deliver>,
    pub(crate) shared: std::sync::Arc<crate::session::SessionState>,
}

impl fmt::Debug for SessionSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionSink")
            .field("id", &self.shared.info.id)
            .finish_non_exhaustive()
    }
}

impl crimson_core::session::Deliver for SessionSink {
    fn deliver(
        &self,
        message: Outgoing,
    ) -> Result<crimson_core::session::Queued, crimson_core::session::SendError> {
        self.queue.deliver(message)
    }

    fn close(&self, code: crimson_core::CloseCode, reason: &str) {
        self.queue.close(code, reason);
    }

    fn is_closed(&self) -> bool {
        self.queue.is_closed()
    }

    fn deliver_all(&self, messages: Vec<Outgoing>) -> Result<(), crimson_core::session::SendError> {
        self.queue.deliver_all(messages)
    }

    fn stats(&self) -> crimson_core::session::QueueStats {
        self.queue.stats()
    }

    fn ask(
        &self,
        body: Payload,
    ) -> Result<oneshot::Receiver<Answer>, crimson_core::session::AskError> {
        use crimson_core::session::AskError;
        let shared = &self.shared;
        if !shared.codec.framed {
            return Err(AskError::NoProtocol);
        }
        let (id, answer) = shared.pending.open().map_err(AskError::TooManyOpen)?;
        let frame = protocol::write(Kind::Request { id }, &body);
        if let Err(err) = self.queue.deliver(Outgoing::Single(frame)) {
            shared.pending.forget(id);
            return Err(AskError::Send(err));
        }
        Ok(answer)
    }
}

/// A session's requests to its client that wait for answers, at most `max` at once.
#[derive(Debug)]
pub(crate) struct Pending {
    max: usize,
    state: Mutex<PendingState>,
}

#[derive(Debug, Default)]
struct PendingState {
    next: u64,
    waiting: HashMap<u64, oneshot::Sender<Answer>>,
}

impl Pending {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            max,
            state: Mutex::default(),
        }
    }

    /// A new request id and where its answer will come, unless `max` wait already.
    pub(crate) fn open(&self) -> Result<(u64, oneshot::Receiver<Answer>), usize> {
        let max = self.max;
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        // Waiters whose caller gave up (timed out, dropped) free their place.
        if state.waiting.len() >= max {
            state.waiting.retain(|_, waiter| !waiter.is_closed());
        }
        if state.waiting.len() >= max {
            return Err(state.waiting.len());
        }
        state.next += 1;
        let id = state.next;
        let (tx, rx) = oneshot::channel();
        state.waiting.insert(id, tx);
        Ok((id, rx))
    }

    /// Forgets request `id` (its caller gave up).
    pub(crate) fn forget(&self, id: u64) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.waiting.remove(&id);
    }

    /// Hands the answer to request `id` to its caller; false when no request `id` waits (it
    /// timed out, or the client made the id up).
    pub(crate) fn answer(&self, id: u64, answer: Answer) -> bool {
        let waiter = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            state.waiting.remove(&id)
        };
        waiter.is_some_and(|waiter| waiter.send(answer).is_ok())
    }

    /// How many requests wait for answers.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .waiting
            .len()
    }

    /// Ends every wait (the session ended): each caller gets `Disconnected`.
    pub(crate) fn clear(&self) {
        let waiting =
            std::mem::take(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()).waiting);
        drop(waiting);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pending_table_is_bounded_and_empties_whatever_happens_to_its_requests() {
        let pending = Pending::new(4);
        let mut waiting = Vec::new();
        for _ in 0..4 {
            waiting.push(pending.open().unwrap());
        }
        assert_eq!(pending.open().unwrap_err(), 4, "at most 4");
        // A caller that gave up (its receiver dropped) frees its place.
        let (gone, _) = waiting.pop().unwrap();
        let (id, answer) = pending.open().unwrap();
        assert_ne!(id, gone, "ids are not reused");
        assert!(pending.answer(id, Ok(Payload::Text("a".into()))));
        assert!(
            !pending.answer(id, Ok(Payload::Text("twice".into()))),
            "once"
        );
        drop(answer);
        pending.forget(waiting[0].0);
        assert!(!pending.answer(waiting[0].0, Err((500, "late".into()))));
        assert_eq!(pending.len(), 2);
        pending.clear();
        assert_eq!(pending.len(), 0);
        for (_, mut answer) in waiting.drain(1..) {
            assert!(
                answer.try_recv().is_err(),
                "cleared: the caller sees the end"
            );
        }
        // A million requests answered, forgotten or abandoned: none is left behind.
        let pending = Pending::new(256);
        for n in 0..1_000_000u64 {
            let (id, answer) = pending.open().unwrap();
            match n % 3 {
                0 => assert!(pending.answer(id, Ok(Payload::Text("ok".into())))),
                1 => pending.forget(id),
                _ => drop(answer),
            }
        }
        assert!(
            pending.len() <= 256,
            "abandoned ones are purged when the table fills"
        );
        pending.clear();
        assert_eq!(pending.len(), 0);
    }
}
