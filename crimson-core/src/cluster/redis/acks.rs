//! The asking side of acknowledged broadcasts across nodes: a bounded table of this node's
//! open asks, fed by what other nodes publish on this node's channel (which sessions they
//! asked, then their answers), and the stream of [`RemoteAck`]s each ask hands its
//! [`AckStream`](crate::cluster::AckStream).
//!
//! What a Redis peer publishes cannot make an ask hold more than it asked for: a node is
//! heard once (its first list), only as many nodes as got the request, only its own sessions,
//! each session's first answer only, and nothing after the deadline or once the stream is
//! dropped (the entry is gone). Everything ignored is counted ([`RedisStats::acks_ignored`]).
//!
//! [`RedisStats::acks_ignored`]: super::RedisStats::acks_ignored

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures_core::Stream;

use super::report::Reports;
use super::wire::{self, Outcome};
use super::Node;
use crate::cluster::{AckError, ClusterError, RemoteAck};
use crate::session::{random_u64, SessionId};

/// How many acknowledged broadcasts of one node may wait for other nodes' answers at once.
pub const MAX_OPEN_ACKS: usize = 1024;
/// The longest an acknowledged broadcast waits for other nodes' sessions.
pub const MAX_ACK_TIMEOUT: Duration = Duration::from_secs(300);
/// How long after its timeout an ask still waits for other nodes' last answers.
pub(crate) const GRACE: Duration = Duration::from_secs(1);
/// How many nodes an ask hears before the publish says how many got it.
const MAX_NODES: usize = 4096;

/// This node's open asks.
#[derive(Debug, Default)]
pub(crate) struct Table {
    open: Mutex<HashMap<u64, Arc<Shared>>>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// What a session's `Timeout` says.
    timeout: Duration,
    /// How many subscribers got the request (this node among them if it heard itself);
    /// none until the publish says.
    receivers: Option<usize>,
    /// This node got its own request (it listens on the channel).
    heard_self: bool,
    /// Nodes that said which sessions they asked: those not answered yet.
    nodes: HashMap<u64, HashSet<SessionId>>,
    ready: VecDeque<RemoteAck>,
    /// Done or past the deadline: nothing more is taken.
    finished: bool,
    waker: Option<Waker>,
}

impl State {
    /// How many other nodes got the request, once known.
    fn expected(&self) -> Option<usize> {
        self.receivers
            .map(|n| n.saturating_sub(usize::from(self.heard_self)))
    }

    fn done(&self) -> bool {
        self.expected().is_some_and(|n| self.nodes.len() >= n)
            && self.nodes.values().all(HashSet::is_empty)
    }

    fn wake(&mut self) {
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Table {
    /// How many asks are open.
    pub(crate) fn len(&self) -> usize {
        lock(&self.open).len()
    }

    /// Opens an ask whose sessions time out after `timeout`; its answers come on the
    /// returned stream until `deadline`. Refused past [`MAX_OPEN_ACKS`].
    pub(crate) fn open(
        self: &Arc<Self>,
        node: Weak<Node>,
        timeout: Duration,
        deadline: tokio::time::Instant,
    ) -> Result<Events, ClusterError> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                timeout,
                receivers: None,
                heard_self: false,
                nodes: HashMap::new(),
                ready: VecDeque::new(),
                finished: false,
                waker: None,
            }),
        });
        let mut open = lock(&self.open);
        if open.len() >= MAX_OPEN_ACKS {
            return Err(ClusterError::TooManyAcks {
                limit: MAX_OPEN_ACKS,
            });
        }
        let mut id = random_u64();
        while open.contains_key(&id) {
            id = random_u64();
        }
        open.insert(id, shared.clone());
        Ok(Events {
            id,
            shared,
            table: self.clone(),
            node,
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
        })
    }

    fn get(&self, ask: u64) -> Option<Arc<Shared>> {
        lock(&self.open).get(&ask).cloned()
    }

    fn close(&self, ask: u64) {
        lock(&self.open).remove(&ask);
    }

    /// This node got its own request back: it is one of the publish's receivers.
    pub(crate) fn heard_self(&self, ask: u64) {
        if let Some(shared) = self.get(ask) {
            let mut state = lock(&shared.state);
            state.heard_self = true;
            state.wake();
        }
    }

    /// `node` asked `sessions` (and not `unasked` more) for ask `ask`.
    pub(crate) fn asked(
        &self,
        reports: &Reports,
        node: u64,
        ask: u64,
        unasked: u32,
        sessions: Vec<SessionId>,
    ) {
        let Some(shared) = self.get(ask) else {
            return reports.acks_ignored(
                1,
                &format_args!(
                    "a list of sessions asked from node {node:016x} for an ask that is not open"
                ),
            );
        };
        let mut state = lock(&shared.state);
        if state.finished || state.nodes.contains_key(&node) {
            return reports.acks_ignored(
                1,
                &format_args!(
                "a second list of sessions asked from node {node:016x}, or one after the deadline"
            ),
            );
        }
        if state.nodes.len() >= state.expected().unwrap_or(MAX_NODES) {
            return reports.acks_ignored(
                1,
                &format_args!(
                "a list of sessions asked from node {node:016x}, more nodes than got the request"
            ),
            );
        }
        let listed = sessions.len();
        // A node answers for its own sessions only.
        let sessions: HashSet<SessionId> =
            sessions.into_iter().filter(|s| s.node() == node).collect();
        if sessions.len() < listed {
            let foreign = listed - sessions.len();
            reports.acks_ignored(
                foreign as u64,
                &format_args!(
                "{foreign} session(s) listed by node {node:016x} that are not its own, or twice"
            ),
            );
        }
        state.ready.push_back(RemoteAck::Asked {
            node,
            asked: sessions.len(),
            unasked: unasked as usize,
        });
        state.nodes.insert(node, sessions);
        state.wake();
    }

    /// `node`'s answers for ask `ask`.
    pub(crate) fn answers(
        &self,
        reports: &Reports,
        node: u64,
        ask: u64,
        answers: Vec<wire::Answer>,
    ) {
        let Some(shared) = self.get(ask) else {
            let count = answers.len();
            return reports.acks_ignored(
                count as u64,
                &format_args!(
                    "{count} answer(s) from node {node:016x} for an ask that is not open"
                ),
            );
        };
        let mut state = lock(&shared.state);
        let timeout = state.timeout;
        let mut ignored = 0;
        for answer in answers {
            let waiting = if state.finished {
                false
            } else {
                state
                    .nodes
                    .get_mut(&node)
                    .is_some_and(|waiting| waiting.remove(&answer.session))
            };
            if !waiting {
                ignored += 1;
                continue;
            }
            state.ready.push_back(RemoteAck::Answer {
                session: answer.session,
                codec: usize::from(answer.codec),
                answer: outcome(answer.outcome, timeout),
            });
        }
        if ignored > 0 {
            reports.acks_ignored(
                ignored,
                &format_args!(
                "{ignored} answer(s) from node {node:016x} not listed, twice, or after the deadline"
            ),
            );
        }
        state.wake();
    }
}

/// A relayed outcome as the asking side reports it.
fn outcome(outcome: Outcome, timeout: Duration) -> Result<crate::message::Payload, AckError> {
    match outcome {
        Outcome::Answered(body) => Ok(body),
        Outcome::Rejected(code, message) => Err(AckError::Rejected { code, message }),
        Outcome::Timeout => Err(AckError::Timeout(timeout)),
        Outcome::Disconnected => Err(AckError::Disconnected),
        Outcome::NotAsked(err) => Err(AckError::Ask(err)),
        Outcome::Failed(message) => Err(AckError::Remote(message)),
    }
}

/// What other nodes say about one open ask, as they say it; closes the ask when dropped.
pub(crate) struct Events {
    id: u64,
    shared: Arc<Shared>,
    table: Arc<Table>,
    /// For reports.
    node: Weak<Node>,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events").field("id", &self.id).finish()
    }
}

impl Events {
    /// The ask's id, as the wire carries it.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// The publish reached `receivers` subscribers; how many of them are other nodes.
    pub(crate) fn published(&self, receivers: usize) -> usize {
        let mut state = lock(&self.shared.state);
        state.receivers = Some(receivers);
        state.expected().unwrap_or(0)
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        self.table.close(self.id);
    }
}

impl Stream for Events {
    type Item = RemoteAck;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<RemoteAck>> {
        let this = &mut *self;
        let mut state = lock(&this.shared.state);
        if let Some(item) = state.ready.pop_front() {
            return Poll::Ready(Some(item));
        }
        if state.finished {
            return Poll::Ready(None);
        }
        if state.done() {
            state.finished = true;
            return Poll::Ready(None);
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            state.finished = true;
            let timeout = state.timeout;
            let mut late = Vec::new();
            for waiting in state.nodes.values_mut() {
                late.extend(waiting.drain());
            }
            for session in late {
                state.ready.push_back(RemoteAck::Answer {
                    session,
                    codec: 0,
                    answer: Err(AckError::Timeout(timeout)),
                });
            }
            let silent = state
                .expected()
                .unwrap_or(0)
                .saturating_sub(state.nodes.len());
            if silent > 0 {
                state.ready.push_back(RemoteAck::Silent { nodes: silent });
                if let Some(node) = this.node.upgrade() {
                    node.reports.acks_silent(
                        silent as u64,
                        &format_args!(
                            "{silent} of {} node(s) silent for one ask",
                            state.expected().unwrap_or(0)
                        ),
                    );
                }
            }
            return Poll::Ready(state.ready.pop_front());
        }
        state.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;
    use crate::message::Payload;

    fn table() -> Arc<Table> {
        Arc::default()
    }

    fn open(table: &Arc<Table>, timeout: Duration, deadline: Duration) -> Events {
        table
            .open(Weak::new(), timeout, tokio::time::Instant::now() + deadline)
            .unwrap()
    }

    fn answer(node: u64, seq: u64, text: &str) -> wire::Answer {
        wire::Answer {
            session: SessionId::from_parts(node, seq),
            codec: 1,
            outcome: Outcome::Answered(Payload::Text(text.into())),
        }
    }

    /// What the stream yields, until it ends, as short strings.
    async fn drain(events: &mut Events) -> Vec<String> {
        let mut seen = Vec::new();
        while let Some(event) = tokio::time::timeout(Duration::from_secs(5), events.next())
            .await
            .expect("the stream ends by its deadline")
        {
            seen.push(match event {
                RemoteAck::Asked {
                    node,
                    asked,
                    unasked,
                } => format!("node {node}: {asked} asked, {unasked} not"),
                RemoteAck::Answer {
                    session,
                    codec,
                    answer,
                } => match answer {
                    Ok(body) => {
                        format!("{}/{} in {codec}: {body:?}", session.node(), session.seq())
                    }
                    Err(err) => format!("{}/{}: {err}", session.node(), session.seq()),
                },
                RemoteAck::Silent { nodes } => format!("{nodes} silent"),
            });
        }
        seen
    }

    #[tokio::test]
    async fn each_listed_session_yields_once_and_the_stream_ends_when_all_have() {
        let table = table();
        let reports = Reports::new();
        let mut events = open(&table, Duration::from_secs(60), Duration::from_secs(60));
        let ask = events.id();
        // Two nodes and this one got it.
        table.heard_self(ask);
        assert_eq!(events.published(3), 2);
        let one = |seq| SessionId::from_parts(1, seq);
        // Node 1 lists its two sessions, a session of node 9 (not its own) and one twice.
        table.asked(
            &reports,
            1,
            ask,
            4,
            vec![one(1), one(2), SessionId::from_parts(9, 1), one(2)],
        );
        table.asked(&reports, 1, ask, 0, vec![one(3)]);
        table.answers(
            &reports,
            1,
            ask,
            vec![
                answer(1, 1, "a"),
                answer(1, 1, "again"),
                answer(1, 3, "not listed"),
                answer(9, 1, "not its own"),
            ],
        );
        // Node 2 asked nobody.
        table.asked(&reports, 2, ask, 0, vec![]);
        // A third node: more than got the request.
        table.asked(&reports, 3, ask, 0, vec![SessionId::from_parts(3, 1)]);
        table.answers(
            &reports,
            1,
            ask,
            vec![wire::Answer {
                session: one(2),
                codec: 0,
                outcome: Outcome::Rejected(4001, "no".into()),
            }],
        );
        assert_eq!(
            drain(&mut events).await,
            [
                "node 1: 2 asked, 4 not",
                "1/1 in 1: Text(\"a\")",
                "node 2: 0 asked, 0 not",
                "1/2: the client refused (4001): no",
            ]
        );
        // Ignored: the foreign and the repeated listing, the second list, three answers, the
        // third node's list.
        assert_eq!(reports.stats().acks_ignored, 2 + 1 + 3 + 1);
        drop(events);
        assert_eq!(table.len(), 0);
        table.answers(&reports, 1, ask, vec![answer(1, 1, "late")]);
        assert_eq!(reports.stats().acks_ignored, 8, "late: the ask is closed");
    }

    #[tokio::test]
    async fn at_the_deadline_listed_sessions_time_out_and_silent_nodes_are_counted() {
        let table = table();
        let reports = Reports::new();
        let timeout = Duration::from_millis(20);
        let mut events = open(&table, timeout, Duration::from_millis(50));
        let ask = events.id();
        // Three other nodes got it (this one does not listen there); one never says a word.
        assert_eq!(events.published(3), 3);
        table.asked(
            &reports,
            1,
            ask,
            0,
            vec![SessionId::from_parts(1, 1), SessionId::from_parts(1, 2)],
        );
        table.asked(&reports, 2, ask, 0, vec![SessionId::from_parts(2, 1)]);
        table.answers(
            &reports,
            2,
            ask,
            vec![wire::Answer {
                session: SessionId::from_parts(2, 1),
                codec: 0,
                outcome: Outcome::Timeout,
            }],
        );
        table.answers(&reports, 1, ask, vec![answer(1, 2, "b")]);
        let seen = drain(&mut events).await;
        assert_eq!(
            seen,
            [
                "node 1: 2 asked, 0 not",
                "node 2: 1 asked, 0 not",
                "2/1: no answer within 20ms",
                "1/2 in 1: Text(\"b\")",
                "1/1: no answer within 20ms",
                "1 silent",
            ]
        );
        // After the deadline nothing more is taken.
        table.answers(&reports, 1, ask, vec![answer(1, 1, "too late")]);
        assert_eq!(reports.stats().acks_ignored, 1);
        assert!(events.next().await.is_none());
    }

    #[tokio::test]
    async fn nobody_else_got_it_ends_at_once() {
        let table = table();
        let mut events = open(&table, Duration::from_secs(60), Duration::from_secs(60));
        table.heard_self(events.id());
        assert_eq!(events.published(1), 0);
        assert!(drain(&mut events).await.is_empty());
    }

    #[tokio::test]
    async fn the_table_is_bounded_and_empties_as_streams_end_or_are_dropped() {
        let table = table();
        let reports = Reports::new();
        let mut open_now = Vec::new();
        for round in 0..20 {
            for _ in 0..MAX_OPEN_ACKS {
                open_now.push(open(
                    &table,
                    Duration::from_secs(60),
                    Duration::from_secs(60),
                ));
            }
            assert_eq!(table.len(), MAX_OPEN_ACKS);
            let refused = table.open(Weak::new(), Duration::ZERO, tokio::time::Instant::now());
            assert!(matches!(
                refused,
                Err(ClusterError::TooManyAcks {
                    limit: MAX_OPEN_ACKS
                })
            ));
            // Half run to their end and are kept; half are dropped early.
            for (n, mut events) in open_now.drain(..).enumerate() {
                if n % 2 == 0 {
                    drop(events);
                    continue;
                }
                let ask = events.id();
                events.published(1);
                table.asked(&reports, 1, ask, 0, vec![SessionId::from_parts(1, round)]);
                table.answers(&reports, 1, ask, vec![answer(1, round, "ok")]);
                assert_eq!(drain(&mut events).await.len(), 2);
            }
            assert_eq!(table.len(), 0, "round {round}");
        }
        assert_eq!(reports.stats().acks_ignored, 0);
    }
}
