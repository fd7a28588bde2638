//! Where the client stands in each stream it gets publications of, and the recovery after a
//! reconnect: one `resume` per stream before anything else, then what the server answers
//! (`docs/protocol.md`, "Streams and recovery"). Each publication reaches the application
//! once, in offset order; what cannot be recovered is an event, never a silent gap.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use crimson_core::protocol::{self, Kind, Position};
use crimson_core::{FrameKind, Payload, PayloadRef};

/// The most streams a client follows (the server reads at most 64 `resume` frames).
pub(crate) const MAX_STREAMS: usize = 64;
/// The most live publications held, across every stream, while recoveries are under way.
const MAX_HELD: usize = 10_000;

/// What happened to a stream's recovery, for the client's events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Recovered { stream: String, count: u64 },
    NotRecovered { stream: String, reason: String },
}

/// What a frame of a stream gives the application: messages to deliver, in order, and
/// perhaps how a recovery went: a gap is said before what comes after it, a recovery is
/// announced once what it recovered was delivered.
#[derive(Debug, Default)]
pub(crate) struct Step {
    pub(crate) gap: Option<Outcome>,
    pub(crate) deliver: Vec<Out>,
    pub(crate) outcome: Option<Outcome>,
    /// A stream past [`MAX_STREAMS`]: delivered, never recovered (the application is told).
    pub(crate) unfollowed: Option<String>,
}

/// A message to deliver: the frame's own body, or one held until now.
#[derive(Debug)]
pub(crate) enum Out {
    This,
    Held(Payload),
}

#[derive(Debug)]
struct Held {
    epoch: String,
    offset: u64,
    body: Payload,
}

#[derive(Debug)]
enum Phase {
    Live,
    /// A `resume` was sent; live publications are held until the answer.
    Waiting {
        held: Vec<Held>,
    },
    /// `left` of the `count` missed publications still to come.
    Recovering {
        left: u64,
        count: u64,
        held: Vec<Held>,
    },
}

#[derive(Debug)]
struct Follow {
    epoch: String,
    offset: u64,
    phase: Phase,
}

/// The streams a client follows.
#[derive(Debug, Default)]
pub(crate) struct Recovery {
    streams: Mutex<HashMap<String, Follow>>,
    /// Publications held across every stream (changed under the lock of `streams`).
    held: AtomicUsize,
}

impl Recovery {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Follow>> {
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where the client stands in each stream it follows.
    pub(crate) fn positions(&self) -> Vec<Position> {
        let mut positions: Vec<Position> = self
            .lock()
            .iter()
            .map(|(stream, follow)| Position {
                stream: stream.clone(),
                epoch: follow.epoch.clone(),
                offset: follow.offset,
            })
            .collect();
        positions.sort_by(|a, b| a.stream.cmp(&b.stream));
        positions
    }

    /// A new connection of the protocol: a `resume` frame per stream followed, to send before
    /// anything else; each stream waits for its answer.
    pub(crate) fn resumes(&self, frame: FrameKind) -> Vec<Payload> {
        let empty = match frame {
            FrameKind::Text => Payload::Text("".into()),
            FrameKind::Binary => Payload::Binary(Default::default()),
        };
        let mut streams = self.lock();
        let mut frames = Vec::with_capacity(streams.len());
        for (stream, follow) in streams.iter_mut() {
            follow.phase = Phase::Waiting { held: Vec::new() };
            self.held.store(0, Ordering::Relaxed);
            frames.push(protocol::write(
                Kind::Resume(Position {
                    stream: stream.clone(),
                    epoch: follow.epoch.clone(),
                    offset: follow.offset,
                }),
                &empty,
            ));
        }
        frames
    }

    /// A new connection without the protocol: nothing can be resumed. Every stream followed
    /// is forgotten, each with its outcome.
    pub(crate) fn unresumable(&self, reason: &str) -> Vec<Outcome> {
        self.held.store(0, Ordering::Relaxed);
        self.lock()
            .drain()
            .map(|(stream, _)| Outcome::NotRecovered {
                stream,
                reason: reason.to_owned(),
            })
            .collect()
    }

    /// The connection dropped: what was held goes (it is recovered again after the
    /// reconnect, from the position of what was delivered).
    pub(crate) fn connection_lost(&self) {
        for follow in self.lock().values_mut() {
            follow.phase = Phase::Live;
        }
        self.held.store(0, Ordering::Relaxed);
    }

    /// A `pub` frame.
    pub(crate) fn publication(&self, at: Position, body: PayloadRef<'_>) -> Step {
        let mut step = Step::default();
        let mut streams = self.lock();
        let full = streams.len() >= MAX_STREAMS;
        let Some(follow) = streams.get_mut(&at.stream) else {
            if !full {
                streams.insert(
                    at.stream,
                    Follow {
                        epoch: at.epoch,
                        offset: at.offset,
                        phase: Phase::Live,
                    },
                );
            } else {
                step.unfollowed = Some(at.stream);
            }
            step.deliver.push(Out::This);
            return step;
        };
        match &mut follow.phase {
            Phase::Live => {
                if at.epoch != follow.epoch {
                    // A new stream under the old name (the server lost its history) while
                    // connected: nothing was missed on this connection.
                    follow.epoch = at.epoch;
                    follow.offset = at.offset;
                    step.deliver.push(Out::This);
                } else if at.offset > follow.offset {
                    follow.offset = at.offset;
                    step.deliver.push(Out::This);
                }
                // Else a publication already delivered.
            }
            Phase::Waiting { held } => {
                if self.held.load(Ordering::Relaxed) < MAX_HELD {
                    self.held.fetch_add(1, Ordering::Relaxed);
                    held.push(Held {
                        epoch: at.epoch,
                        offset: at.offset,
                        body: body.to_payload(),
                    });
                } else {
                    // The answer is not coming: what is held goes out, and the gap is said.
                    let held = std::mem::take(held);
                    step.gap = Some(Outcome::NotRecovered {
                        stream: at.stream.clone(),
                        reason: "no answer to the resume".into(),
                    });
                    follow.phase = Phase::Live;
                    flush(follow, held, &mut step, &self.held);
                    if at.epoch == follow.epoch && at.offset > follow.offset {
                        follow.offset = at.offset;
                        step.deliver.push(Out::This);
                    }
                }
            }
            Phase::Recovering { left, count, held } => {
                // The missed publications come together, right after `recovered`.
                if at.epoch == follow.epoch && at.offset > follow.offset {
                    follow.offset = at.offset;
                    step.deliver.push(Out::This);
                }
                *left -= 1;
                if *left == 0 {
                    let count = *count;
                    let held = std::mem::take(held);
                    follow.phase = Phase::Live;
                    flush(follow, held, &mut step, &self.held);
                    step.outcome = Some(Outcome::Recovered {
                        stream: at.stream,
                        count,
                    });
                }
            }
        }
        step
    }

    /// A `sub` frame: the session follows the stream from `at` (it connected, or joined the
    /// room). A stream the client resumes is settled by the resume's answer instead.
    pub(crate) fn subscribed(&self, at: Position) -> Step {
        let mut step = Step::default();
        let mut streams = self.lock();
        let full = streams.len() >= MAX_STREAMS;
        match streams.get_mut(&at.stream) {
            None if full => step.unfollowed = Some(at.stream),
            None => {
                streams.insert(
                    at.stream,
                    Follow {
                        epoch: at.epoch,
                        offset: at.offset,
                        phase: Phase::Live,
                    },
                );
            }
            Some(follow) => {
                if matches!(follow.phase, Phase::Live)
                    && (follow.epoch != at.epoch || follow.offset < at.offset)
                {
                    // Joined again after leaving: what was published meanwhile was not for
                    // this session.
                    follow.epoch = at.epoch;
                    follow.offset = at.offset;
                }
            }
        }
        step
    }

    /// An `unsub` frame: the session left the room, and the stream is forgotten (not resumed
    /// after a reconnect). Whatever was held is delivered; a resume still unanswered will
    /// not be (the server drops it), so what it would have recovered is a gap, said.
    pub(crate) fn unsubscribed(&self, stream: String) -> Step {
        let mut step = Step::default();
        let mut streams = self.lock();
        let Some(mut follow) = streams.remove(&stream) else {
            return step;
        };
        match std::mem::replace(&mut follow.phase, Phase::Live) {
            Phase::Live => {}
            Phase::Waiting { held } => {
                step.gap = Some(Outcome::NotRecovered {
                    stream,
                    reason: "left the room before the resume was answered".into(),
                });
                // What was held arrived live, after the gap: delivered in offset order.
                follow.epoch.clear();
                follow.offset = 0;
                flush(&mut follow, held, &mut step, &self.held);
            }
            // The recovered publications come before the `unsub`: not reached, but what was
            // held is delivered all the same.
            Phase::Recovering { held, .. } => flush(&mut follow, held, &mut step, &self.held),
        }
        step
    }

    /// A `recovered` frame: `count` missed publications follow.
    pub(crate) fn recovered(&self, at: Position, count: u64) -> Step {
        let mut step = Step::default();
        let mut streams = self.lock();
        let Some(follow) = streams.get_mut(&at.stream) else {
            return step;
        };
        let Phase::Waiting { held } = &mut follow.phase else {
            return step;
        };
        let held = std::mem::take(held);
        if count == 0 {
            follow.phase = Phase::Live;
            flush(follow, held, &mut step, &self.held);
            step.outcome = Some(Outcome::Recovered {
                stream: at.stream,
                count,
            });
        } else {
            follow.phase = Phase::Recovering {
                left: count,
                count,
                held,
            };
        }
        step
    }

    /// A `lost` frame: the stream goes on from `at`; the gap is said.
    pub(crate) fn lost(&self, at: Position, reason: String) -> Step {
        let mut step = Step::default();
        let mut streams = self.lock();
        let Some(follow) = streams.get_mut(&at.stream) else {
            return step;
        };
        let held = match &mut follow.phase {
            Phase::Waiting { held } | Phase::Recovering { held, .. } => std::mem::take(held),
            Phase::Live => Vec::new(),
        };
        follow.phase = Phase::Live;
        follow.epoch = at.epoch;
        // What was held arrived live: delivered, though older than the stream's position.
        follow.offset = 0;
        flush(follow, held, &mut step, &self.held);
        follow.offset = follow.offset.max(at.offset);
        step.gap = Some(Outcome::NotRecovered {
            stream: at.stream,
            reason,
        });
        step
    }
}

/// Delivers what was held, in offset order, once each, past the stream's position.
fn flush(follow: &mut Follow, mut held: Vec<Held>, step: &mut Step, total: &AtomicUsize) {
    total.fetch_sub(held.len(), Ordering::Relaxed);
    held.sort_by_key(|h| h.offset);
    for h in held {
        if h.epoch != follow.epoch {
            // Before the epoch the server named: the client can place it nowhere.
            if follow.offset == 0 && follow.epoch.is_empty() {
                follow.epoch = h.epoch;
            } else {
                continue;
            }
        }
        if h.offset > follow.offset {
            follow.offset = h.offset;
            step.deliver.push(Out::Held(h.body));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(stream: &str, epoch: &str, offset: u64) -> Position {
        Position {
            stream: stream.into(),
            epoch: epoch.into(),
            offset,
        }
    }

    thread_local! {
        static BODIES: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
    }

    /// A body whose text is `n`, kept alive for the test.
    fn body(n: u64) -> PayloadRef<'static> {
        let text: &'static str = Box::leak(n.to_string().into_boxed_str());
        BODIES.with(|b| b.borrow_mut().push(text.to_owned()));
        PayloadRef::Text(text)
    }

    fn texts(step: &Step) -> Vec<String> {
        let this = BODIES.with(|b| b.borrow().last().cloned().unwrap_or_default());
        step.deliver
            .iter()
            .map(|out| match out {
                Out::This => this.clone(),
                Out::Held(p) => String::from_utf8_lossy(p.as_bytes()).into_owned(),
            })
            .collect()
    }

    #[test]
    fn live_publications_are_delivered_once_in_order() {
        let r = Recovery::default();
        assert_eq!(texts(&r.publication(at("all", "e", 1), body(1))), ["1"]);
        assert_eq!(texts(&r.publication(at("all", "e", 2), body(2))), ["2"]);
        assert!(texts(&r.publication(at("all", "e", 2), body(2))).is_empty());
        assert_eq!(texts(&r.publication(at("all", "f", 1), body(9))), ["9"]);
        assert_eq!(r.positions(), [at("all", "f", 1)]);
    }

    #[test]
    fn a_recovery_merges_held_live_publications_without_duplicates() {
        let r = Recovery::default();
        r.publication(at("room:a", "e", 3), body(3));
        let resumes = r.resumes(FrameKind::Text);
        assert_eq!(resumes.len(), 1);
        assert_eq!(resumes[0].as_bytes(), b"resume s=room%3Aa e=e o=3\n");
        // Live ones arrive before the answer: held.
        assert!(r
            .publication(at("room:a", "e", 6), body(6))
            .deliver
            .is_empty());
        assert!(r
            .publication(at("room:a", "e", 5), body(5))
            .deliver
            .is_empty());
        assert!(r.recovered(at("room:a", "e", 5), 2).deliver.is_empty());
        assert_eq!(texts(&r.publication(at("room:a", "e", 4), body(4))), ["4"]);
        let last = r.publication(at("room:a", "e", 5), body(5));
        assert_eq!(
            texts(&last),
            ["5", "6"],
            "the held 5 is a duplicate, 6 is new"
        );
        assert_eq!(
            last.outcome,
            Some(Outcome::Recovered {
                stream: "room:a".into(),
                count: 2
            })
        );
        assert!(r
            .publication(at("room:a", "e", 6), body(6))
            .deliver
            .is_empty());
        assert_eq!(texts(&r.publication(at("room:a", "e", 7), body(7))), ["7"]);
    }

    #[test]
    fn past_the_most_streams_followed_a_stream_is_delivered_and_said_to_be_unfollowed() {
        let r = Recovery::default();
        for n in 0..MAX_STREAMS {
            let step = r.subscribed(at(&format!("room:{n}"), "e", 0));
            assert!(step.unfollowed.is_none());
        }
        let step = r.subscribed(at("room:late", "e", 0));
        assert_eq!(step.unfollowed.as_deref(), Some("room:late"));
        let step = r.publication(at("room:other", "e", 1), body(1));
        assert_eq!(texts(&step), ["1"], "still delivered");
        assert_eq!(step.unfollowed.as_deref(), Some("room:other"));
        assert_eq!(r.positions().len(), MAX_STREAMS);
    }

    #[test]
    fn what_is_held_is_bounded_across_every_stream() {
        let r = Recovery::default();
        r.subscribed(at("room:a", "e", 0));
        r.subscribed(at("room:b", "e", 0));
        r.resumes(FrameKind::Text);
        for n in 1..=MAX_HELD as u64 {
            assert!(r
                .publication(at("room:a", "e", n), body(n))
                .deliver
                .is_empty());
        }
        // Another stream's publication finds the bound reached: its gap is said, and it goes on.
        let step = r.publication(at("room:b", "e", 1), body(1));
        assert!(
            matches!(step.gap, Some(Outcome::NotRecovered { ref stream, .. }) if stream == "room:b")
        );
        assert_eq!(texts(&step), ["1"]);
        // The held ones of `a` go out with its answer, and count no more.
        let step = r.recovered(at("room:a", "e", 0), 0);
        assert_eq!(step.deliver.len(), MAX_HELD);
        assert_eq!(r.held.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_room_left_is_forgotten_and_not_resumed() {
        let r = Recovery::default();
        r.subscribed(at("all", "e", 0));
        r.subscribed(at("room:a", "e", 2));
        assert_eq!(texts(&r.publication(at("room:a", "e", 3), body(3))), ["3"]);
        let step = r.unsubscribed("room:a".into());
        assert!(step.gap.is_none() && step.deliver.is_empty());
        assert_eq!(r.positions(), [at("all", "e", 0)]);
        assert_eq!(r.resumes(FrameKind::Text).len(), 1, "only `all` is resumed");
        // Left while its resume waited: what arrived meanwhile is delivered after the gap.
        let r = Recovery::default();
        r.subscribed(at("room:b", "e", 4));
        r.resumes(FrameKind::Text);
        assert!(r
            .publication(at("room:b", "e", 9), body(9))
            .deliver
            .is_empty());
        assert!(r
            .publication(at("room:b", "e", 8), body(8))
            .deliver
            .is_empty());
        let step = r.unsubscribed("room:b".into());
        assert!(matches!(
            step.gap,
            Some(Outcome::NotRecovered { ref stream, .. }) if stream == "room:b"
        ));
        assert_eq!(texts(&step), ["8", "9"]);
        assert_eq!(r.held.load(Ordering::Relaxed), 0);
        assert!(r.positions().is_empty());
        // An unknown stream's `unsub` changes nothing.
        assert!(r.unsubscribed("room:c".into()).deliver.is_empty());
    }

    #[test]
    fn a_lost_stream_says_so_and_goes_on() {
        let r = Recovery::default();
        r.publication(at("all", "e", 3), body(3));
        r.resumes(FrameKind::Text);
        let step = r.lost(at("all", "", 0), "epoch_changed".into());
        assert!(step.deliver.is_empty());
        assert_eq!(
            step.gap,
            Some(Outcome::NotRecovered {
                stream: "all".into(),
                reason: "epoch_changed".into()
            })
        );
        assert_eq!(texts(&r.publication(at("all", "n", 1), body(1))), ["1"]);
        r.resumes(FrameKind::Text);
        r.publication(at("all", "n", 9), body(9));
        let step = r.lost(at("all", "n", 9), "over_limit".into());
        assert_eq!(texts(&step), ["9"], "what arrived live is still delivered");
        assert_eq!(r.positions(), [at("all", "n", 9)]);
        assert_eq!(r.unresumable("no protocol").len(), 1);
        assert!(r.positions().is_empty());
    }
}

/// Random runs of publish / read / disconnect / reconnect / node restart / leave / join
/// against a real
/// [`LocalCluster`](crimson_core::cluster::LocalCluster) with history, the client's side
/// being this module: every publication reaches the application once and in order, or the
/// gap before it was said (`NotRecovered`) after it was published.
#[cfg(test)]
mod model {
    use std::collections::{HashMap, VecDeque};
    use std::sync::Arc;
    use std::time::Duration;

    use crimson_core::cluster::{History, LocalCluster, Target};
    use crimson_core::protocol::{self, Kind};
    use crimson_core::session::{MemorySink, SessionHandle, SessionId, SessionInfo};
    use crimson_core::{FrameKind, Payload};
    use proptest::prelude::*;

    use super::{Out, Outcome, Recovery, Step};

    #[derive(Debug, Clone)]
    enum Op {
        Publish {
            room: bool,
        },
        Read(usize),
        Disconnect,
        Reconnect {
            join_first: bool,
        },
        Restart,
        /// The application takes the session out of the room (`unsub`), or back in.
        Leave,
        Join,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => any::<bool>().prop_map(|room| Op::Publish { room }),
            4 => (0usize..6).prop_map(Op::Read),
            1 => Just(Op::Disconnect),
            2 => any::<bool>().prop_map(|join_first| Op::Reconnect { join_first }),
            1 => Just(Op::Restart),
            1 => Just(Op::Leave),
            1 => Just(Op::Join),
        ]
    }

    /// What the application saw, in order.
    #[derive(Debug)]
    enum Seen {
        Message(String),
        Gap(String),
    }

    struct World {
        history: History,
        cluster: LocalCluster,
        client: Recovery,
        /// The live connection: its session and the frames not read yet.
        session: Option<(SessionId, Arc<MemorySink>)>,
        /// The live session is in the room.
        in_room: bool,
        /// When the live session left the room and joined it again (alternately), and how
        /// many of their `unsub` and `sub` frames the client has read.
        leaves: Vec<u64>,
        joins: Vec<u64>,
        unsubs_read: usize,
        resubs_read: usize,
        unread: VecDeque<Payload>,
        /// Per stream, each publication's id, the time it was made, and whether the client
        /// was owed it: it followed the stream then (it had learned a position in it).
        published: HashMap<String, Vec<(String, u64, bool)>>,
        /// What the application saw, with the time.
        seen: Vec<(Seen, u64)>,
        clock: u64,
        count: u64,
    }

    impl World {
        fn tick(&mut self) -> u64 {
            self.clock += 1;
            self.clock
        }

        fn connect(&mut self, join_first: bool) {
            if self.session.is_some() {
                return;
            }
            let sink = Arc::new(MemorySink::new(1 << 20));
            let id = SessionId::on_node(self.cluster.node_id());
            let info = SessionInfo {
                id,
                connected_at: std::time::SystemTime::now(),
                remote_addr: None,
                path: "/".into(),
                config: "c".into(),
            };
            self.cluster
                .add(SessionHandle::new(info, sink.clone()).framing(true))
                .unwrap();
            if join_first {
                self.cluster.join(id, "r").unwrap();
            }
            for frame in self.client.resumes(FrameKind::Text) {
                let (Kind::Resume(from), _) = protocol::read(frame.as_ref()).unwrap() else {
                    panic!("not a resume")
                };
                self.cluster.resume(id, from);
            }
            if !join_first {
                self.cluster.join(id, "r").unwrap();
            }
            self.session = Some((id, sink));
            self.in_room = true;
        }

        fn disconnect(&mut self) {
            if let Some((id, _)) = self.session.take() {
                self.leaves.clear();
                self.joins.clear();
                self.unsubs_read = 0;
                self.resubs_read = 0;
                self.cluster.remove(id);
                self.unread.clear();
                self.client.connection_lost();
            }
        }

        fn read(&mut self, n: usize) {
            if let Some((_, sink)) = &self.session {
                self.unread
                    .extend(sink.take().into_iter().map(|o| o.payload().clone()));
            }
            for _ in 0..n {
                let Some(frame) = self.unread.pop_front() else {
                    return;
                };
                let (kind, body) = protocol::read(frame.as_ref()).unwrap();
                match &kind {
                    // Left: what the room publishes from then on is not owed, until the
                    // client reads the `sub` of its next join (then what follows it is).
                    Kind::Unsubscribed { .. } => {
                        let left = self.leaves[self.unsubs_read];
                        self.unsubs_read += 1;
                        self.owe("room:r", left, u64::MAX, false);
                    }
                    Kind::Subscribed(at)
                        if at.stream == "room:r" && self.resubs_read < self.unsubs_read =>
                    {
                        let joined = self.joins[self.resubs_read];
                        self.resubs_read += 1;
                        let until = self
                            .leaves
                            .get(self.resubs_read)
                            .copied()
                            .unwrap_or(u64::MAX);
                        self.owe("room:r", joined, until, true);
                    }
                    _ => {}
                }
                let step = match kind {
                    Kind::Subscribed(at) => self.client.subscribed(at),
                    Kind::Publication(at) => self.client.publication(at, body),
                    Kind::Recovered { position, count } => self.client.recovered(position, count),
                    Kind::Lost { position, reason } => self.client.lost(position, reason),
                    Kind::Unsubscribed { stream } => self.client.unsubscribed(stream),
                    other => panic!("unexpected {other:?}"),
                };
                self.apply(step, body.as_bytes());
            }
        }

        fn apply(&mut self, step: Step, body: &[u8]) {
            let text = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap();
            if let Some(Outcome::NotRecovered { stream, .. }) = step.gap {
                let at = self.tick();
                self.seen.push((Seen::Gap(stream), at));
            }
            for out in step.deliver {
                let message = match out {
                    Out::This => text(body),
                    Out::Held(held) => text(held.as_bytes()),
                };
                let at = self.tick();
                self.seen.push((Seen::Message(message), at));
            }
        }

        /// Marks what `stream` published between `after` and `before` as owed or not.
        fn owe(&mut self, stream: &str, after: u64, before: u64, owed: bool) {
            for publication in self.published.entry(stream.into()).or_default() {
                if publication.1 > after && publication.1 < before {
                    publication.2 = owed;
                }
            }
        }

        fn publish(&mut self, room: bool) {
            self.count += 1;
            let (stream, target) = if room {
                ("room:r", Target::Room("r".into()))
            } else {
                ("all", Target::All)
            };
            let id = format!("{stream}#{}", self.count);
            let at = self.tick();
            // Owed while it follows the stream, unless its live session is out of the room.
            let owed = self.client.positions().iter().any(|p| p.stream == stream)
                && (!room || self.session.is_none() || self.in_room);
            self.published
                .entry(stream.into())
                .or_default()
                .push((id.clone(), at, owed));
            self.cluster.deliver(&Payload::Text(id.into()), &target);
        }

        fn restart(&mut self) {
            self.disconnect();
            self.cluster = LocalCluster::builder().history(self.history).build();
        }

        /// Every publication once, in order; one the client was owed (made while it followed
        /// the stream) may be missing only if a gap was said after it was made.
        fn check(&self) {
            for (stream, published) in &self.published {
                let mut next = 0;
                // The latest gap said for this stream since its last delivery.
                let mut gap_at: Option<u64> = None;
                for (seen, at) in &self.seen {
                    match seen {
                        Seen::Gap(s) if s == stream => gap_at = Some(*at),
                        Seen::Message(id) if id.starts_with(&format!("{stream}#")) => {
                            let index = published
                                .iter()
                                .position(|(p, _, _)| p == id)
                                .expect("a publication");
                            assert!(index >= next, "{id} again or out of order: {:?}", self.seen);
                            for (missed, made, _) in published[next..index].iter().filter(|p| p.2) {
                                assert!(
                                    gap_at.is_some_and(|gap| gap > *made),
                                    "{missed} was skipped without a gap said after it: {:?}",
                                    self.seen
                                );
                            }
                            next = index + 1;
                            gap_at = None;
                        }
                        _ => {}
                    }
                }
                for (missed, made, _) in published[next..].iter().filter(|p| p.2) {
                    assert!(
                        gap_at.is_some_and(|gap| gap > *made),
                        "{missed} never came and no gap was said after it: {:?}",
                        self.seen
                    );
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        #[test]
        fn every_publication_once_in_order_or_the_gap_is_said(
            ops in proptest::collection::vec(op(), 1..80),
            size in 0usize..6,
            limit in 1usize..6,
        ) {
            let history = History::new(size, Duration::MAX).recover_limit(limit);
            let mut world = World {
                history,
                cluster: LocalCluster::builder().history(history).build(),
                client: Recovery::default(),
                session: None,
                in_room: false,
                leaves: Vec::new(),
                joins: Vec::new(),
                unsubs_read: 0,
                resubs_read: 0,
                unread: VecDeque::new(),
                published: HashMap::new(),
                seen: Vec::new(),
                clock: 0,
                count: 0,
            };
            world.connect(true);
            for op in ops {
                match op {
                    Op::Publish { room } => world.publish(room),
                    Op::Read(n) => world.read(n),
                    Op::Disconnect => world.disconnect(),
                    Op::Reconnect { join_first } => {
                        world.disconnect();
                        world.connect(join_first);
                    }
                    Op::Restart => world.restart(),
                    Op::Leave | Op::Join => {
                        if let Some((id, _)) = &world.session {
                            let id = *id;
                            let at = world.tick();
                            match op {
                                Op::Leave if world.in_room => {
                                    world.cluster.leave(id, "r");
                                    world.in_room = false;
                                    world.leaves.push(at);
                                }
                                Op::Join if !world.in_room => {
                                    world.cluster.join(id, "r").unwrap();
                                    world.in_room = true;
                                    world.joins.push(at);
                                }
                                _ => {}
                            }
                        }
                    }
                }
            }
            // The end: connected, everything read.
            world.connect(true);
            world.read(usize::MAX);
            world.check();
        }
    }
}
