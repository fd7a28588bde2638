//! One session, driven by one task: its connection's reader and writer, its heartbeat and
//! timers, its handler, and its ending.
//!
//! The handler is polled by the session's own task, so a message goes from the socket to the
//! handler and its reply back to the socket without waking another task. This file holds the
//! task's state and its poll loop, one round after another of its steps; each step is a file:
//!
//! - [`read`]: socket → decode → the handler's input (bounded, rate-limited);
//! - [`handler`]: the user's future, and the panic guard around every step that runs user code;
//! - [`write`]: the outgoing queue → frames → socket, flushed once per batch;
//! - [`timers`]: heartbeat, stalled writes, the close and grace deadlines, on one timer;
//! - [`ending`]: the state machine every way of ending goes through;
//! - [`lifecycle`]: the ending carried out: its events in, its actions applied, the last word;
//! - [`outbox`] and [`incoming`]: the two bounded queues;
//! - [`start`]: the spawned future, from the 101 to the running session;
//! - [`wake`]: which step a wake-up is for, so that a session woken to write does not poll
//!   its reader and its handler too.

pub(crate) mod ending;
mod handler;
pub(crate) mod incoming;
mod lifecycle;
pub(crate) mod outbox;
mod rate;
mod read;
pub(crate) mod start;
mod timers;
mod wake;
mod write;

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use crimson_core::session::Outgoing;
use crimson_core::transport::Transport;
use crimson_core::CloseCode;
use tokio::time::{Instant, Sleep};

use self::ending::{Ending, Event};
use self::outbox::{EndRequest, OutboxReceiver};
use self::rate::Limiter;
use crate::config::Settings;
use crate::metrics::RouteMetrics;
use crate::session::SessionState;

/// A handler's future, with its extractors already run.
pub(crate) type HandlerFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// How many rounds of work one poll does before it yields to other tasks.
const ROUNDS: usize = 16;
/// How many messages one round moves from the outgoing queue to the socket's write queue.
const BATCH: usize = 64;

/// What the session's task holds until it ends, each released on drop: its place in the
/// cluster, the live counts.
pub(crate) type Guards = Box<dyn Send + Sync>;

/// One session's task.
pub(crate) struct Task<T, Up> {
    conn: Option<T>,
    shared: Arc<SessionState>,
    settings: Arc<Settings>,
    /// The config's metrics, added to once per batch.
    metrics: Arc<RouteMetrics>,
    outbox: OutboxReceiver,
    input: Option<incoming::Sender<crate::request::Incoming<Up>>>,
    handler: Option<HandlerFuture>,
    ending: Ending,
    events: Vec<Event>,
    batch: VecDeque<Outgoing>,
    /// Messages handed to the connection and not yet flushed.
    in_flight: u64,
    /// Our close, once the outgoing queue is written.
    close_pending: Option<(CloseCode, String)>,
    close_queued: bool,
    close_written: bool,
    /// The socket is not read any more (the peer's close arrived, or reading failed).
    read_done: bool,
    /// Reading waits for the handler to take a message (its pongs wait unread too).
    held: bool,
    /// The session was accepted (its `on_connect` ran): `on_close` is called for it.
    accepted: bool,
    limiter: Option<Limiter>,
    /// Messages that arrived after the handler's input ended.
    unread: u64,
    /// The session's cluster, where a `resume` frame goes (a session of the protocol).
    cluster: Option<Arc<dyn crimson_core::cluster::SessionCluster>>,
    /// A hash of each stream's name resumed so far (at most [`read::MAX_RESUMES`]): a
    /// stream is resumed once per connection.
    resumed: Vec<u64>,
    timer: Pin<Box<Sleep>>,
    armed: Option<Instant>,
    /// The timer was polled since it was last set (so it will wake the task).
    timer_polled: bool,
    next_ping: Option<Instant>,
    ping_sent: Option<Instant>,
    stall_since: Option<Instant>,
    /// The grace time (draining) or the close handshake's deadline.
    deadline: Option<Instant>,
    resume_at: Option<Instant>,
    idle_until: Option<Instant>,
    handler_until: Option<Instant>,
    guards: Option<Guards>,
    /// The read step's waker, and whether the step is due (woken, or not yet waiting).
    read_part: Arc<wake::Part>,
    read_waker: Waker,
    read_due: bool,
    /// The handler's waker, and whether the handler is due.
    handler_part: Arc<wake::Part>,
    handler_waker: Waker,
    handler_due: bool,
    /// The task waker the parts hold (its identity).
    task_waker: Option<(usize, usize)>,
}

impl<T, Up> Task<T, Up>
where
    T: Transport,
    Up: crimson_core::CrimsonMessage,
{
    /// A session over `conn`, its handler not started yet (`handler` is `None` for a session
    /// refused after the upgrade: `refusal` is its close).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        conn: T,
        shared: Arc<SessionState>,
        settings: Arc<Settings>,
        mut outbox: OutboxReceiver,
        input: incoming::Sender<crate::request::Incoming<Up>>,
        handler: Option<HandlerFuture>,
        guards: Guards,
        metrics: Arc<RouteMetrics>,
    ) -> Self {
        let now = Instant::now();
        let next_ping = settings.heartbeat.map(|(interval, _)| now + interval);
        let idle_until = settings.idle_timeout.map(|timeout| now + timeout);
        let limiter = Limiter::new(settings.inbound_messages, settings.inbound_bytes, now);
        let accepted = handler.is_some();
        let (read_part, read_waker) = wake::Part::new();
        let (handler_part, handler_waker) = wake::Part::new();
        // The handler's own sends wake nothing: the write step follows in the same round.
        outbox.set_own_task(&handler_waker);
        Self {
            conn: Some(conn),
            shared,
            metrics,
            outbox,
            input: Some(input),
            handler,
            ending: Ending::new(),
            events: Vec::new(),
            batch: VecDeque::new(),
            in_flight: 0,
            close_pending: None,
            close_queued: false,
            close_written: false,
            read_done: false,
            held: false,
            accepted,
            limiter,
            unread: 0,
            cluster: None,
            resumed: Vec::new(),
            timer: Box::pin(tokio::time::sleep_until(now + timers::FAR)),
            armed: None,
            timer_polled: false,
            next_ping,
            ping_sent: None,
            stall_since: None,
            deadline: None,
            resume_at: None,
            idle_until,
            handler_until: None,
            guards: Some(guards),
            settings,
            read_part,
            read_waker,
            read_due: true,
            handler_part,
            handler_waker,
            handler_due: true,
            task_waker: None,
        }
    }

    /// Refuses the session right after the upgrade (a connection limit): closes at once.
    pub(crate) fn refuse(&mut self, code: CloseCode, reason: &str) {
        self.events.push(Event::Requested(EndRequest::CloseNow(
            code,
            reason.to_owned(),
        )));
    }

    /// Lets the steps' wakers wake the task polling now (a new waker only when the task is
    /// polled with one: a spawned task keeps its waker).
    fn set_task_waker(&mut self, waker: &Waker) {
        let id = wake::identity(waker);
        if self.task_waker != Some(id) {
            self.read_part.set_task(waker);
            self.handler_part.set_task(waker);
            self.task_waker = Some(id);
        }
    }
}

impl<T, Up> Future for Task<T, Up>
where
    T: Transport + Unpin,
    Up: crimson_core::CrimsonMessage,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        // One reading of the clock per poll: a poll is short, and deadlines are coarse.
        let now = Instant::now();
        this.set_task_waker(cx.waker());
        for _ in 0..ROUNDS {
            let mut progress = this.take_requests();
            this.apply_events(now);
            progress |= this.guarded("reader", |this| this.read(now));
            this.apply_events(now);
            if this.poll_handler() {
                progress = true;
                // A `close()` made before the handler returned is the cause, not the return.
                this.take_requests();
            }
            this.apply_events(now);
            progress |= this.guarded("writer", |this| this.write(cx, now));
            this.apply_events(now);
            progress |= this.guarded("timers", |this| this.timers(cx, now));
            this.apply_events(now);
            if this.finished() {
                this.finish();
                return Poll::Ready(());
            }
            if !progress {
                return Poll::Pending;
            }
        }
        // Plenty left to do: let other tasks run first.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl<T, Up> Unpin for Task<T, Up> {}
