//! How a session ends: one state machine owns every way it can, and says what the session's
//! task must do about each event.
//!
//! ```text
//!          bad input                  handler returned / grace over
//!   Open ────────────▶ Draining ─────────────────────────────────┐
//!    │  handler returned, close(), overflow, shutdown, panic      ▼
//!    ├─────────────────────────────────────────────────────▶ Closing ──close written──▶ CloseSent
//!    │  the peer's close                                         │ the peer's close        │ the peer's close,
//!    └─────────────────────▶ Replying ──close written──▶ Done ◀──┘ (reply = our close)     │ timeout
//!                                                         ▲ ◀──────────────────────────────┘
//!      lost connection, terminate(), timeout: Done from anywhere
//! ```
//!
//! The first cause decides the [`CloseRecord`]: the code and reason a session ended with, and
//! whether the peer closed first.

use crimson_core::{CloseCode, CloseRecord, ClosedBy};

use super::outbox::EndRequest;

/// The reason of the close a returning handler sends.
pub(crate) const SESSION_ENDED: &str = "session ended";

/// Where a session is in its ending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Messages flow both ways.
    Open,
    /// The peer sent something refused: its close waits until the handler has answered what
    /// came before (or its grace time is over).
    Draining,
    /// Our close frame is queued, after what is queued before it.
    Closing,
    /// Our close frame is written; the peer's is awaited.
    CloseSent,
    /// The peer closed first; our reply is queued.
    Replying,
    /// The connection is dropped.
    Done,
}

/// Something that bears on a session's ending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    /// The handler returned.
    HandlerReturned,
    /// The handler panicked.
    HandlerPanicked,
    /// A producer asked (`close()`, `terminate()`, an overflow, the lifetime watchdog).
    Requested(EndRequest),
    /// The peer sent something refused (undecodable, too big, a protocol error): close with
    /// this code once the handler has answered what came before.
    BadInput(CloseCode, String),
    /// The handler's time to answer before bad input's close is over.
    GraceOver,
    /// The peer's close frame arrived (its code and reason, if any).
    PeerClosed(Option<(CloseCode, String)>),
    /// The connection failed: a read or write error, the peer vanished, a stalled write, no
    /// pong.
    Lost(String),
    /// Our close frame was written to the socket.
    CloseWritten,
    /// The close handshake took longer than the close timeout.
    TimedOut,
}

/// What the session's task must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// The handler's input ends after what it has; later messages are discarded.
    EndInput,
    /// Queue a close frame after what is queued, or at once discarding it.
    SendClose {
        code: CloseCode,
        reason: String,
        discard: bool,
    },
    /// Arm the handler's grace time (bad input's close waits for it at most).
    StartGrace,
    /// Arm the close handshake's time limit.
    StartCloseTimer,
    /// Drop the connection.
    Drop,
}

/// A session's ending.
#[derive(Debug)]
pub(crate) struct Ending {
    phase: Phase,
    /// Bad input's close, held while draining.
    held: Option<(CloseCode, String)>,
    /// The peer's close arrived while ours was queued: ours is the reply.
    peer_closed: bool,
    record: Option<CloseRecord>,
}

impl Ending {
    pub(crate) fn new() -> Self {
        Self {
            phase: Phase::Open,
            held: None,
            peer_closed: false,
            record: None,
        }
    }

    pub(crate) fn phase(&self) -> Phase {
        self.phase
    }

    /// How the session ended (or is ending), once a cause is known.
    pub(crate) fn record(&self) -> Option<&CloseRecord> {
        self.record.as_ref()
    }

    fn note(&mut self, code: CloseCode, reason: &str, by: ClosedBy) {
        if self.record.is_none() {
            self.record = Some(CloseRecord {
                code,
                reason: reason.to_owned(),
                by,
            });
        }
    }

    /// Starts our close: the held cause if bad input came first, else this one.
    fn close(&mut self, code: CloseCode, reason: &str, discard: bool) -> Vec<Action> {
        let (code, reason) = match self.held.take() {
            Some(held) => held,
            None => (code, reason.to_owned()),
        };
        self.note(code, &reason, ClosedBy::Server);
        self.phase = Phase::Closing;
        vec![
            Action::EndInput,
            Action::SendClose {
                code,
                reason,
                discard,
            },
            Action::StartCloseTimer,
        ]
    }

    fn drop_now(&mut self) -> Vec<Action> {
        self.phase = Phase::Done;
        vec![Action::EndInput, Action::Drop]
    }

    /// Applies an event; returns what to do, in order.
    pub(crate) fn on(&mut self, event: Event) -> Vec<Action> {
        use Phase::*;
        match (self.phase, event) {
            (Done, _) => vec![],

            (_, Event::Lost(reason)) => {
                self.note(CloseCode::ABNORMAL, &reason, ClosedBy::Failure);
                self.drop_now()
            }
            (_, Event::Requested(EndRequest::Terminate)) => {
                self.note(
                    CloseCode::ABNORMAL,
                    "terminated by the server",
                    ClosedBy::Server,
                );
                self.drop_now()
            }
            (_, Event::TimedOut) if self.phase != Open && self.phase != Draining => self.drop_now(),

            (Open, Event::HandlerReturned) => self.close(CloseCode::NORMAL, SESSION_ENDED, false),
            (Open | Draining, Event::HandlerPanicked) => {
                self.close(CloseCode::INTERNAL_ERROR, "internal server error", false)
            }
            (Open | Draining, Event::Requested(EndRequest::Close(code, reason))) => {
                self.close(code, &reason, false)
            }
            (Open | Draining, Event::Requested(EndRequest::CloseNow(code, reason))) => {
                self.close(code, &reason, true)
            }
            (Open, Event::BadInput(code, reason)) => {
                self.note(code, &reason, ClosedBy::Server);
                self.held = Some((code, reason));
                self.phase = Draining;
                vec![Action::EndInput, Action::StartGrace]
            }
            (Draining, Event::HandlerReturned | Event::GraceOver) => {
                self.close(CloseCode::NORMAL, SESSION_ENDED, false)
            }
            (Open | Draining, Event::PeerClosed(frame)) => {
                let (code, reason) = match frame {
                    Some((code, reason)) => (code, reason),
                    None => (CloseCode::NO_STATUS, String::new()),
                };
                self.note(code, &reason, ClosedBy::Client);
                self.phase = Replying;
                // Echo the peer's code (1000 when it gave none), unless bad input was first.
                let (reply, why) = self.held.take().unwrap_or(match code {
                    CloseCode::NO_STATUS => (CloseCode::NORMAL, String::new()),
                    code => (code, String::new()),
                });
                vec![
                    Action::EndInput,
                    Action::SendClose {
                        code: reply,
                        reason: why,
                        discard: true,
                    },
                    Action::StartCloseTimer,
                ]
            }
            (Closing, Event::PeerClosed(_)) => {
                self.peer_closed = true;
                vec![]
            }
            (Closing, Event::CloseWritten) if self.peer_closed => self.drop_now(),
            (Closing, Event::CloseWritten) => {
                self.phase = CloseSent;
                vec![]
            }
            (CloseSent, Event::PeerClosed(_)) => self.drop_now(),
            (Replying, Event::CloseWritten) => self.drop_now(),
            // Everything else changes nothing: a close is already under way.
            _ => vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(code: u16, reason: &str, discard: bool) -> Action {
        Action::SendClose {
            code: CloseCode::from_u16(code),
            reason: reason.into(),
            discard,
        }
    }

    fn closing(code: u16, reason: &str, discard: bool) -> Vec<Action> {
        vec![
            Action::EndInput,
            close(code, reason, discard),
            Action::StartCloseTimer,
        ]
    }

    fn dropped() -> Vec<Action> {
        vec![Action::EndInput, Action::Drop]
    }

    fn shutdown() -> Event {
        Event::Requested(EndRequest::Close(
            CloseCode::GOING_AWAY,
            "server shutting down".into(),
        ))
    }

    /// Each row: events in order, then for each the actions expected, then the phase and
    /// the record at the end.
    #[allow(clippy::type_complexity)]
    fn table() -> Vec<(
        &'static str,
        Vec<(Event, Vec<Action>)>,
        Phase,
        Option<(u16, &'static str, ClosedBy)>,
    )> {
        let peer_close =
            |code: u16| Event::PeerClosed(Some((CloseCode::from_u16(code), "bye".into())));
        let bad = || Event::BadInput(CloseCode::INVALID_PAYLOAD, "invalid JSON".into());
        let lost = || Event::Lost("connection failed".into());
        vec![
            (
                "the handler returns: 1000 after the queue, then the peer answers",
                vec![
                    (Event::HandlerReturned, closing(1000, SESSION_ENDED, false)),
                    (Event::CloseWritten, vec![]),
                    (peer_close(1000), dropped()),
                ],
                Phase::Done,
                Some((1000, SESSION_ENDED, ClosedBy::Server)),
            ),
            (
                "the peer closes first: its code is echoed, the queue discarded",
                vec![
                    (
                        peer_close(4001),
                        vec![
                            Action::EndInput,
                            close(4001, "", true),
                            Action::StartCloseTimer,
                        ],
                    ),
                    (Event::HandlerReturned, vec![]),
                    (Event::CloseWritten, dropped()),
                ],
                Phase::Done,
                Some((4001, "bye", ClosedBy::Client)),
            ),
            (
                "a close without a code is answered with 1000 and recorded as 1005",
                vec![(
                    Event::PeerClosed(None),
                    vec![
                        Action::EndInput,
                        close(1000, "", true),
                        Action::StartCloseTimer,
                    ],
                )],
                Phase::Replying,
                Some((1005, "", ClosedBy::Client)),
            ),
            (
                "bad input waits for the handler, then closes with its code",
                vec![
                    (bad(), vec![Action::EndInput, Action::StartGrace]),
                    (
                        Event::Requested(EndRequest::Close(CloseCode::NORMAL, "x".into())),
                        closing(1007, "invalid JSON", false),
                    ),
                ],
                Phase::Closing,
                Some((1007, "invalid JSON", ClosedBy::Server)),
            ),
            (
                "bad input: the grace time runs out",
                vec![
                    (bad(), vec![Action::EndInput, Action::StartGrace]),
                    (Event::GraceOver, closing(1007, "invalid JSON", false)),
                    (Event::HandlerReturned, vec![]),
                ],
                Phase::Closing,
                Some((1007, "invalid JSON", ClosedBy::Server)),
            ),
            (
                "bad input, then the handler returns",
                vec![
                    (bad(), vec![Action::EndInput, Action::StartGrace]),
                    (Event::HandlerReturned, closing(1007, "invalid JSON", false)),
                ],
                Phase::Closing,
                Some((1007, "invalid JSON", ClosedBy::Server)),
            ),
            (
                "an overflow closes at once, discarding the queue",
                vec![(
                    Event::Requested(EndRequest::CloseNow(
                        CloseCode::POLICY,
                        "slow consumer".into(),
                    )),
                    closing(1008, "slow consumer", true),
                )],
                Phase::Closing,
                Some((1008, "slow consumer", ClosedBy::Server)),
            ),
            (
                "a panic closes with 1011",
                vec![(
                    Event::HandlerPanicked,
                    closing(1011, "internal server error", false),
                )],
                Phase::Closing,
                Some((1011, "internal server error", ClosedBy::Server)),
            ),
            (
                "shutdown closes with 1001; a second cause changes nothing",
                vec![
                    (shutdown(), closing(1001, "server shutting down", false)),
                    (Event::HandlerReturned, vec![]),
                    (
                        Event::Requested(EndRequest::Close(CloseCode::NORMAL, "x".into())),
                        vec![],
                    ),
                ],
                Phase::Closing,
                Some((1001, "server shutting down", ClosedBy::Server)),
            ),
            (
                "both close at once: ours is the reply",
                vec![
                    (
                        Event::Requested(EndRequest::Close(CloseCode::NORMAL, "done".into())),
                        closing(1000, "done", false),
                    ),
                    (peer_close(1000), vec![]),
                    (Event::CloseWritten, dropped()),
                ],
                Phase::Done,
                Some((1000, "done", ClosedBy::Server)),
            ),
            (
                "the peer never answers our close",
                vec![
                    (Event::HandlerReturned, closing(1000, SESSION_ENDED, false)),
                    (Event::CloseWritten, vec![]),
                    (Event::TimedOut, dropped()),
                ],
                Phase::Done,
                Some((1000, SESSION_ENDED, ClosedBy::Server)),
            ),
            (
                "the connection drops: 1006",
                vec![(lost(), dropped()), (Event::HandlerReturned, vec![])],
                Phase::Done,
                Some((1006, "connection failed", ClosedBy::Failure)),
            ),
            (
                "terminate drops at once, even while closing",
                vec![
                    (shutdown(), closing(1001, "server shutting down", false)),
                    (Event::Requested(EndRequest::Terminate), dropped()),
                ],
                Phase::Done,
                Some((1001, "server shutting down", ClosedBy::Server)),
            ),
            (
                "terminate from open",
                vec![(Event::Requested(EndRequest::Terminate), dropped())],
                Phase::Done,
                Some((1006, "terminated by the server", ClosedBy::Server)),
            ),
            (
                "a timer left over from open changes nothing",
                vec![(Event::TimedOut, vec![]), (Event::CloseWritten, vec![])],
                Phase::Open,
                None,
            ),
        ]
    }

    #[test]
    fn every_row_of_the_table() {
        for (name, steps, phase, record) in table() {
            let mut ending = Ending::new();
            for (i, (event, expected)) in steps.into_iter().enumerate() {
                let actions = ending.on(event.clone());
                assert_eq!(actions, expected, "{name}: step {i} ({event:?})");
            }
            assert_eq!(ending.phase(), phase, "{name}: phase");
            let got = ending
                .record()
                .map(|r| (r.code.as_u16(), r.reason.as_str(), r.by));
            assert_eq!(got, record, "{name}: record");
        }
    }
}
