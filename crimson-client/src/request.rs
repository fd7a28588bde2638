//! Requests over the Crimson protocol (`crimson.v1`, `docs/protocol.md`): the client's own
//! ([`CrimsonClient::request`](crate::CrimsonClient::request)), waiting for their answers
//! across reconnects only when idempotent, and the server's, answered by the
//! [`on_request`](crate::CrimsonClientBuilder::on_request) hook.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crimson_core::{DecodeError, EncodeError, Payload};
use tokio::sync::oneshot;

use crate::error::SendError;
use crate::outbox::{Item, ItemKind, Outbox};

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The connection does not speak the Crimson protocol (the server's config does not turn
    /// it on, or the client's [`protocol`](crate::CrimsonClientBuilder::protocol) is off):
    /// requests cannot travel on it.
    #[error("the connection does not speak the Crimson protocol (crimson.v1): requests cannot be sent on it")]
    NoProtocol,
    /// Not connected, or the connection ended before the answer came. The request may or may
    /// not have reached the server; it is not sent again unless it is idempotent
    /// ([`request_idempotent`](crate::CrimsonClient::request_idempotent)).
    #[error("disconnected before the server answered")]
    Disconnected,
    /// No answer within the timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The server answered with an error: its code (`docs/protocol.md`: 400 undecodable, 500
    /// not answered, 4000–4999 the application's) and message.
    #[error("the server refused the request ({code}): {message}")]
    Rejected {
        /// The code.
        code: u16,
        /// The message.
        message: String,
    },
    /// The answer did not decode as the request's response type.
    #[error("the answer did not decode: {0}")]
    Decode(#[source] DecodeError),
    /// The request did not encode.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The request could not be queued (the client is closed, or its outbox is full).
    #[error(transparent)]
    Send(#[from] SendError),
    /// As many requests as the client allows wait for answers.
    #[error("{0} requests already wait for answers")]
    TooManyOpen(usize),
}

/// How the application refuses a request from the server: a code (`4000`–`4999` are the
/// application's) and a message for the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The code.
    pub code: u16,
    /// The message (cut to 1 KiB).
    pub message: String,
}

impl Refusal {
    /// A refusal with `code` and `message`.
    pub fn new(code: u16, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// What the server answered: the response's body, or an error's code and text.
pub(crate) type Answer = Result<Payload, RequestError>;

/// The client's requests that wait for answers.
#[derive(Debug)]
pub(crate) struct Requests {
    max: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    next: u64,
    waiting: HashMap<u64, Waiting>,
}

#[derive(Debug)]
struct Waiting {
    answer: oneshot::Sender<Answer>,
    /// The body, kept to send again after a reconnect: only for an idempotent request.
    again: Option<Payload>,
    /// Handed to a connection (it may have reached the server).
    sent: bool,
}

impl Requests {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            max,
            state: Mutex::default(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new request id and where its answer will come, unless `max` wait already.
    pub(crate) fn open(
        &self,
        again: Option<Payload>,
    ) -> Result<(u64, oneshot::Receiver<Answer>), RequestError> {
        let mut state = self.state();
        if state.waiting.len() >= self.max {
            state
                .waiting
                .retain(|_, waiting| !waiting.answer.is_closed());
        }
        if state.waiting.len() >= self.max {
            return Err(RequestError::TooManyOpen(state.waiting.len()));
        }
        state.next += 1;
        let id = state.next;
        let (answer, receiver) = oneshot::channel();
        state.waiting.insert(
            id,
            Waiting {
                answer,
                again,
                sent: false,
            },
        );
        Ok((id, receiver))
    }

    /// Forgets request `id` (its caller gave up).
    pub(crate) fn forget(&self, id: u64) {
        self.state().waiting.remove(&id);
    }

    /// Request `id` was handed to a connection (or, `false`, given back untouched).
    pub(crate) fn mark_sent(&self, id: u64, sent: bool) {
        if let Some(waiting) = self.state().waiting.get_mut(&id) {
            waiting.sent = sent;
        }
    }

    /// Ends request `id` with `answer` (the server's, or why there will be none).
    pub(crate) fn answer(&self, id: u64, answer: Answer) -> bool {
        let waiting = self.state().waiting.remove(&id);
        waiting.is_some_and(|waiting| waiting.answer.send(answer).is_ok())
    }

    /// The connection ended: a request it may have carried is queued again if idempotent,
    /// and fails with `Disconnected` otherwise. Never sent twice behind the caller's back.
    pub(crate) fn connection_lost(&self, outbox: &Outbox) {
        let mut failed = Vec::new();
        let mut again = Vec::new();
        {
            let mut state = self.state();
            // Callers that gave up: nothing to send again, nobody to tell.
            state
                .waiting
                .retain(|_, waiting| !waiting.answer.is_closed());
            let ids: Vec<u64> = state
                .waiting
                .iter()
                .filter(|(_, waiting)| waiting.sent)
                .map(|(id, _)| *id)
                .collect();
            for id in ids {
                let Some(waiting) = state.waiting.get_mut(&id) else {
                    continue;
                };
                match waiting.again.clone() {
                    Some(payload) => {
                        waiting.sent = false;
                        again.push(Item {
                            payload,
                            kind: ItemKind::Request(id),
                        });
                    }
                    None => {
                        if let Some(waiting) = state.waiting.remove(&id) {
                            failed.push(waiting);
                        }
                    }
                }
            }
        }
        for waiting in failed {
            let _ = waiting.answer.send(Err(RequestError::Disconnected));
        }
        again.sort_by_key(|item| match item.kind {
            ItemKind::Request(id) => id,
            _ => 0,
        });
        // Ahead of what was queued since, in the order they were first asked.
        outbox.requeue(again.into_iter());
    }

    /// The client closed for good: every request fails.
    pub(crate) fn close(&self) {
        let waiting = std::mem::take(&mut self.state().waiting);
        for (_, waiting) in waiting {
            let _ = waiting.answer.send(Err(RequestError::Disconnected));
        }
    }

    /// How many requests wait for answers.
    pub(crate) fn len(&self) -> usize {
        self.state().waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &'static str) -> Payload {
        Payload::Text(crimson_core::Text::from_static(s))
    }

    #[test]
    fn a_lost_connection_fails_what_it_carried_and_queues_again_what_is_idempotent() {
        let outbox = Outbox::new(8);
        outbox.open();
        let requests = Requests::new(4);
        let (plain, mut plain_answer) = requests.open(None).unwrap();
        let (again, mut again_answer) = requests.open(Some(text("again"))).unwrap();
        let (unsent, mut unsent_answer) = requests.open(None).unwrap();
        requests.mark_sent(plain, true);
        requests.mark_sent(again, true);
        requests.connection_lost(&outbox);
        assert!(matches!(
            plain_answer.try_recv(),
            Ok(Err(RequestError::Disconnected))
        ));
        assert!(again_answer.try_recv().is_err(), "still waiting");
        assert!(
            unsent_answer.try_recv().is_err(),
            "never left: still waiting"
        );
        assert_eq!(outbox.len(), 1, "the idempotent one is queued again");
        assert_eq!(requests.len(), 2);
        assert!(requests.answer(again, Ok(text("done"))));
        requests.close();
        assert!(matches!(
            unsent_answer.try_recv(),
            Ok(Err(RequestError::Disconnected))
        ));
        assert_eq!(requests.len(), 0);
        let _ = unsent;
    }

    #[test]
    fn a_million_requests_leave_nothing_behind_and_the_table_is_bounded() {
        let outbox = Outbox::new(8);
        outbox.open();
        let requests = Requests::new(256);
        for n in 0..1_000_000u64 {
            let again = (n % 5 == 0).then(|| text("x"));
            let (id, answer) = requests.open(again).unwrap();
            requests.mark_sent(id, true);
            match n % 4 {
                0 => assert!(requests.answer(id, Ok(text("ok")))),
                1 => requests.forget(id),
                2 => drop(answer),
                _ => {
                    // A lost connection: failed, or queued again and answered on the next.
                    requests.connection_lost(&outbox);
                    if requests.answer(id, Ok(text("late"))) {
                        assert_eq!(outbox.hand_over_all(), 1);
                    }
                }
            }
            assert_eq!(outbox.len(), 0);
        }
        assert!(
            requests.len() <= 256,
            "abandoned ones are purged when it fills"
        );
        requests.close();
        assert_eq!(requests.len(), 0);
    }
}
