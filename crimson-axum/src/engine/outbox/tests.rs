//! The outgoing queue's unit tests: batches and `flushed`, the overflow policies, end
//! requests and their urgency, waiting for room, and when the writer is woken.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Waker};
use std::time::Duration;

use crimson_core::protocol::{self, Kind, Position};
use crimson_core::session::{Outgoing, OverflowPolicy, Queued, SendError, SharedPayload};
use crimson_core::{CloseCode, Payload};

use super::receiver::Took;
use super::{outbox, EndRequest, OutboxReceiver};

fn text(n: usize) -> Outgoing {
    Outgoing::Single(Payload::Text(n.to_string().into()))
}

fn take_now(rx: &mut OutboxReceiver, max: usize) -> Vec<Outgoing> {
    let waker = Waker::noop();
    let mut cx = Context::from_waker(waker);
    let mut batch = VecDeque::new();
    let _ = rx.take(&mut cx, max, &mut batch);
    batch.into()
}

#[tokio::test]
async fn batches_flush_waits_for_its_own_messages() {
    let (tx, mut rx) = outbox(8, OverflowPolicy::Disconnect);
    for n in 0..3 {
        assert_eq!(tx.try_push(text(n)), Ok(Queued::Queued));
    }
    assert_eq!(take_now(&mut rx, 2), vec![text(0), text(1)]);
    let waiter = {
        let tx = tx.clone();
        tokio::spawn(async move { tx.flushed().await })
    };
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(!waiter.is_finished(), "three messages are not written yet");
    assert_eq!(take_now(&mut rx, 8), vec![text(2)]);
    rx.record_sent(3);
    waiter.await.unwrap();
    assert_eq!(tx.sent(), 3);
}

#[test]
fn overflow_asks_to_close_now() {
    let (tx, mut rx) = outbox(2, OverflowPolicy::Disconnect);
    tx.try_push(text(0)).unwrap();
    tx.try_push(text(1)).unwrap();
    assert_eq!(tx.try_push(text(2)), Err(SendError::Overflow));
    assert_eq!(tx.try_push(text(3)), Err(SendError::Closed));
    assert_eq!(
        rx.take_request(),
        Some(EndRequest::CloseNow(
            CloseCode::POLICY,
            "slow consumer: 2 messages were waiting".into()
        ))
    );
    assert_eq!(rx.discard(), 2);
    assert_eq!(tx.dropped(), 2);
}

#[test]
fn drop_oldest_keeps_the_newest() {
    let (tx, mut rx) = outbox(2, OverflowPolicy::DropOldest);
    for n in 0..5 {
        tx.try_push(text(n)).unwrap();
    }
    assert_eq!(tx.dropped(), 3);
    assert_eq!(take_now(&mut rx, 8), vec![text(3), text(4)]);
}

#[test]
fn more_urgent_requests_replace_less_urgent_ones() {
    let (tx, mut rx) = outbox(2, OverflowPolicy::Disconnect);
    assert!(tx.request_end(EndRequest::Close(CloseCode::NORMAL, "a".into())));
    assert!(!tx.request_end(EndRequest::Close(CloseCode::GOING_AWAY, "b".into())));
    assert!(tx.request_end(EndRequest::Terminate));
    assert!(!tx.request_end(EndRequest::CloseNow(CloseCode::POLICY, "c".into())));
    assert_eq!(rx.take_request(), Some(EndRequest::Terminate));
    assert_eq!(rx.take_request(), None);
}

#[tokio::test]
async fn push_waits_for_room_and_fails_when_closed() {
    let (tx, mut rx) = outbox(1, OverflowPolicy::Disconnect);
    tx.push(text(0)).await.unwrap();
    let producer = {
        let tx = tx.clone();
        tokio::spawn(async move { tx.push(text(1)).await })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(
        !producer.is_finished(),
        "push waits while the queue is full"
    );
    assert_eq!(take_now(&mut rx, 8), vec![text(0)]);
    tokio::time::timeout(Duration::from_secs(5), producer)
        .await
        .expect("taking makes room")
        .unwrap()
        .unwrap();
    let blocked = {
        let tx = tx.clone();
        tokio::spawn(async move { tx.push(text(2)).await })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    rx.stop_accepting();
    assert_eq!(blocked.await.unwrap(), Err(SendError::Closed));
    assert_eq!(tx.inner.state().room_waiters, 0);
}

/// Counts its wake-ups.
struct Counter(std::sync::atomic::AtomicUsize);

impl std::task::Wake for Counter {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn counter() -> (Arc<Counter>, Waker) {
    let counter = Arc::new(Counter(AtomicUsize::new(0)));
    (counter.clone(), Waker::from(counter))
}

#[test]
fn pushes_wake_the_writer_once_until_it_takes() {
    let (tx, mut rx) = outbox(8, OverflowPolicy::Disconnect);
    let (woken, waker) = counter();
    let mut cx = Context::from_waker(&waker);
    let mut batch = VecDeque::new();
    assert_eq!(rx.take(&mut cx, 8, &mut batch), Took::default());
    tx.try_push(text(0)).unwrap();
    tx.try_push(text(1)).unwrap();
    assert_eq!(woken.0.load(Ordering::SeqCst), 1, "one wake for two pushes");
    assert_eq!(
        rx.take(&mut cx, 1, &mut batch),
        Took {
            more: true,
            request: false
        }
    );
    batch.clear();
    assert_eq!(rx.take(&mut cx, 8, &mut batch), Took::default());
    assert_eq!(Vec::from(std::mem::take(&mut batch)), vec![text(1)]);
    // Nothing new: nothing taken, and the next push wakes again.
    assert_eq!(rx.take(&mut cx, 8, &mut batch), Took::default());
    assert!(batch.is_empty());
    tx.try_push(text(2)).unwrap();
    assert_eq!(woken.0.load(Ordering::SeqCst), 2);
    assert_eq!(rx.take(&mut cx, 8, &mut batch), Took::default());
    assert_eq!(Vec::from(batch), vec![text(2)]);
}

#[test]
fn a_request_wakes_the_writer_and_take_reports_it() {
    let (tx, mut rx) = outbox(8, OverflowPolicy::Disconnect);
    let (woken, waker) = counter();
    let mut cx = Context::from_waker(&waker);
    let mut batch = VecDeque::new();
    let _ = rx.take(&mut cx, 8, &mut batch);
    assert!(tx.request_end(EndRequest::Terminate));
    assert_eq!(woken.0.load(Ordering::SeqCst), 1);
    assert_eq!(
        rx.take(&mut cx, 8, &mut batch),
        Took {
            more: false,
            request: true
        }
    );
    assert_eq!(rx.take_request(), Some(EndRequest::Terminate));
    assert_eq!(rx.take_request(), None);
}

/// A push from the writer's own task (its handler) wakes nothing, but the writer's next
/// take in the same round finds it.
#[tokio::test]
async fn the_writers_own_push_is_taken_without_a_wake() {
    let (tx, mut rx) = outbox(8, OverflowPolicy::Disconnect);
    let (woken, waker) = counter();
    let mut cx = Context::from_waker(&waker);
    let mut batch = VecDeque::new();
    let _ = rx.take(&mut cx, 8, &mut batch);
    let mut push = std::pin::pin!(tx.push(text(7)));
    assert!(std::future::Future::poll(push.as_mut(), &mut cx).is_ready());
    assert_eq!(woken.0.load(Ordering::SeqCst), 0);
    let _ = rx.take(&mut cx, 8, &mut batch);
    assert_eq!(Vec::from(batch), vec![text(7)]);
}

#[test]
fn an_idle_queue_holds_no_memory_after_a_backlog() {
    let (tx, mut rx) = outbox(256, OverflowPolicy::Disconnect);
    for n in 0..200 {
        tx.try_push(text(n)).unwrap();
    }
    assert_eq!(take_now(&mut rx, 1000).len(), 200);
    assert_eq!(tx.inner.state().queue.capacity(), 0);
}

/// The `queued` gauge follows each queue's length in steps of `DEPTH_STEP`, and a queue that
/// ends takes its whole share back.
#[cfg(feature = "metrics")]
#[test]
fn the_queued_gauge_follows_the_length_in_steps() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    use super::{outbox_counted, Counted, DEPTH_STEP};

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let counted = metrics::with_local_recorder(&recorder, || Counted {
        queued: crimson_core::metrics::Gauge::new("queued", &[]),
        ..Counted::default()
    });
    // A snapshot swaps the gauge to 0: what it read is added up here.
    let mut total = 0.0;
    let mut gauge = || {
        match snapshotter.snapshot().into_vec().pop() {
            Some((_, _, _, DebugValue::Gauge(value))) => total += value.into_inner(),
            other => panic!("one gauge, not {other:?}"),
        }
        total
    };
    let (tx, mut rx) = outbox_counted(64, OverflowPolicy::Disconnect, counted);
    let (tx2, rx2) = outbox_counted(
        64,
        OverflowPolicy::Disconnect,
        metrics::with_local_recorder(&recorder, || Counted {
            queued: crimson_core::metrics::Gauge::new("queued", &[]),
            ..Counted::default()
        }),
    );
    for n in 0..20 {
        tx.try_push(text(n)).unwrap();
    }
    assert_eq!(gauge(), 16.0, "two steps of {DEPTH_STEP}");
    for n in 0..9 {
        tx2.try_push(text(n)).unwrap();
    }
    assert_eq!(gauge(), 24.0, "the two queues add up");
    assert_eq!(take_now(&mut rx, 5).len(), 5);
    assert_eq!(gauge(), 24.0, "15 left: within a step of what was reported");
    assert_eq!(take_now(&mut rx, 64).len(), 15);
    assert_eq!(gauge(), 8.0, "an empty queue reports 0 at once");
    drop(rx2);
    assert_eq!(gauge(), 0.0, "an ended queue takes its share back");
}

/// A recovery goes past the capacity (it is bounded by the history's recovery limit), and
/// does not take the room of live messages: a live message right after a recovery larger
/// than the queue must not close the session as a slow consumer.
#[test]
fn a_recovery_past_capacity_leaves_live_messages_their_room() {
    let (tx, mut rx) = outbox(4, OverflowPolicy::Disconnect);
    tx.try_push(text(0)).unwrap();
    tx.deliverer()
        .deliver_all((1..=10).map(text).collect())
        .unwrap();
    for n in 11..14 {
        assert_eq!(tx.try_push(text(n)), Ok(Queued::Queued), "live {n}");
    }
    assert_eq!(tx.try_push(text(14)), Err(SendError::Overflow));

    let (tx, mut rx2) = outbox(4, OverflowPolicy::Disconnect);
    tx.deliverer()
        .deliver_all((0..10).map(text).collect())
        .unwrap();
    // Six of the recovery written: four left, and still not counted.
    assert_eq!(take_now(&mut rx2, 6), (0..6).map(text).collect::<Vec<_>>());
    for n in 10..14 {
        assert_eq!(tx.try_push(text(n)), Ok(Queued::Queued), "live {n}");
    }
    // All written: the capacity is the capacity again.
    assert_eq!(take_now(&mut rx2, 100).len(), 8);
    for n in 14..18 {
        assert_eq!(tx.try_push(text(n)), Ok(Queued::Queued), "live {n}");
    }
    assert_eq!(tx.try_push(text(18)), Err(SendError::Overflow));
    let _ = take_now(&mut rx, 100);
}

/// Dropping the oldest never cuts a recovery (the client would be told `recovered n=…` and
/// get fewer): the oldest live message goes.
#[test]
fn drop_oldest_spares_a_recovery() {
    let (tx, mut rx) = outbox(2, OverflowPolicy::DropOldest);
    tx.try_push(text(0)).unwrap();
    tx.deliverer()
        .deliver_all((1..=3).map(text).collect())
        .unwrap();
    tx.try_push(text(4)).unwrap();
    assert_eq!(tx.try_push(text(5)), Ok(Queued::DroppedOldest));
    assert_eq!(tx.try_push(text(6)), Ok(Queued::DroppedOldest));
    assert_eq!(tx.dropped(), 2);
    assert_eq!(
        take_now(&mut rx, 100),
        vec![text(1), text(2), text(3), text(5), text(6)]
    );

    // Live messages dropped from behind a recovery, again and again: the recovery stays
    // whole and counted apart, however many go.
    let (tx, mut rx) = outbox(2, OverflowPolicy::DropOldest);
    tx.deliverer()
        .deliver_all((0..3).map(text).collect())
        .unwrap();
    for n in 3..20 {
        tx.try_push(text(n)).unwrap();
    }
    assert_eq!(
        take_now(&mut rx, 100),
        vec![text(0), text(1), text(2), text(18), text(19)]
    );
}

/// While the socket is full the writer only registers for wake-ups; what was pushed
/// meanwhile is taken when it takes again, though no push came after its last registration
/// (it was left queued until the next push: a slow reader's last messages stalled).
#[test]
fn messages_pushed_while_the_writer_only_registers_are_taken() {
    let (tx, mut rx) = outbox(8, OverflowPolicy::Disconnect);
    tx.try_push(text(0)).unwrap();
    assert_eq!(take_now(&mut rx, 100), vec![text(0)]);
    tx.try_push(text(1)).unwrap();
    let waker = Waker::noop();
    rx.register_only(&mut Context::from_waker(waker));
    assert_eq!(take_now(&mut rx, 100), vec![text(1)]);
}

fn publication(stream: &str, offset: u64) -> Outgoing {
    let position = Position {
        stream: stream.into(),
        epoch: "e".into(),
        offset,
    };
    let body = Payload::Text(format!("{stream} {offset}").into());
    let frame = protocol::write(Kind::Publication(position.clone()), &body);
    Outgoing::Shared(SharedPayload::publication(frame, position))
}

fn notice(stream: &str, offset: u64) -> Outgoing {
    publication(stream, offset)
        .dropped_notice()
        .expect("a publication")
}

/// A publication dropped to make room is never a silent gap: a `lost … reason=dropped` of its
/// stream takes its place, and a later drop in the same stream replaces the earlier notice
/// (one per stream at most), so the client learns of each gap before what follows it.
#[tokio::test]
async fn drop_oldest_tells_of_dropped_publications() {
    let (tx, mut rx) = outbox(2, OverflowPolicy::DropOldest);
    tx.try_push(publication("all", 1)).unwrap();
    tx.try_push(publication("all", 2)).unwrap();
    // Dropped: all 1 (its notice), then all 2 (its notice replaces the first), then room 1,
    // then all 3 (replacing all 2's); a plain message dropped has no notice.
    tx.try_push(publication("room:a", 1)).unwrap();
    tx.try_push(publication("all", 3)).unwrap();
    tx.try_push(text(7)).unwrap();
    tx.try_push(publication("all", 4)).unwrap();
    tx.try_push(text(8)).unwrap();
    assert_eq!(tx.dropped(), 5);
    assert_eq!(
        take_now(&mut rx, 100),
        vec![
            notice("room:a", 1),
            notice("all", 3),
            publication("all", 4),
            text(8)
        ]
    );
    // The notice frame itself, as a client reads it.
    assert_eq!(
        notice("all", 3).payload().as_bytes(),
        b"lost s=all e=e o=3 reason=dropped\n"
    );
    // Each message pushed is settled once: written, or dropped (a notice in its place is
    // written instead, and not counted twice).
    rx.record_sent(4);
    tokio::time::timeout(Duration::from_secs(5), tx.flushed())
        .await
        .expect("everything pushed is settled");
    let waiter = {
        let tx = tx.clone();
        tx.try_push(text(9)).unwrap();
        tokio::spawn(async move { tx.flushed().await })
    };
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(!waiter.is_finished(), "one message is not written yet");
    let _ = take_now(&mut rx, 100);
    rx.record_sent(1);
    tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .unwrap()
        .unwrap();
}

/// A notice stays where its publication was, behind a recovery queued before it, and a later
/// drop of its stream moves it past the recovery.
#[test]
fn a_dropped_publications_notice_keeps_its_place() {
    let (tx, mut rx) = outbox(1, OverflowPolicy::DropOldest);
    tx.try_push(publication("all", 5)).unwrap();
    tx.deliverer()
        .deliver_all(vec![text(0), publication("all", 4), publication("all", 5)])
        .unwrap();
    tx.try_push(publication("all", 6)).unwrap();
    tx.try_push(publication("all", 7)).unwrap();
    assert_eq!(
        take_now(&mut rx, 100),
        vec![
            text(0),
            publication("all", 4),
            publication("all", 5),
            notice("all", 6),
            publication("all", 7),
        ]
    );
}

/// Under a flood over several streams, the queue holds at most its capacity and one notice
/// per stream, and what the client reads is, per stream, every publication in order with
/// each gap told before what follows it.
#[test]
fn a_flood_of_publications_is_told_gap_by_gap() {
    const STREAMS: [&str; 3] = ["all", "room:a", "room:b"];
    let (tx, mut rx) = outbox(4, OverflowPolicy::DropOldest);
    let mut read = Vec::new();
    let mut next = [0u64; 3];
    let mut step = 0u64;
    for n in 0..3_000usize {
        // A pseudo-random stream each time, and a read now and then.
        step = step
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let s = (step >> 33) as usize % 3;
        next[s] += 1;
        tx.try_push(publication(STREAMS[s], next[s])).unwrap();
        assert!(tx.inner.state().queue.len() <= 4 + STREAMS.len());
        if n % 97 == 0 {
            read.extend(take_now(&mut rx, 3));
        }
    }
    read.extend(take_now(&mut rx, 100));
    let mut last = [0u64; 3];
    let mut gaps = 0;
    for message in &read {
        let (s, offset, is_notice) = match message {
            Outgoing::Shared(shared) => {
                let position = shared.position().unwrap();
                (position.stream.clone(), position.offset, false)
            }
            Outgoing::Control(frame) => match protocol::read(frame.as_ref()).unwrap().0 {
                Kind::Lost { position, reason } => {
                    assert_eq!(reason, "dropped");
                    (position.stream, position.offset, true)
                }
                other => panic!("unexpected {other:?}"),
            },
            other @ Outgoing::Single(_) => panic!("unexpected {other:?}"),
        };
        let i = STREAMS.iter().position(|name| *name == s).unwrap();
        if is_notice {
            assert!(
                offset > last[i],
                "{s}: a notice at {offset} after {}",
                last[i]
            );
            gaps += 1;
        } else {
            assert_eq!(
                offset,
                last[i] + 1,
                "{s}: {offset} after {} without a notice",
                last[i]
            );
        }
        last[i] = offset;
    }
    assert_eq!(last, next, "every stream read to its end");
    assert!(gaps > 0, "the flood dropped some");
}

fn control(n: usize) -> Outgoing {
    Outgoing::Control(Payload::Text(format!("sub s=room%3A{n} e=e o=0\n").into()))
}

/// Control frames (`sub`, `unsub`, `lost`) are never dropped to make room: the oldest other
/// message goes instead, and a queue full of them closes as a slow consumer, whatever the
/// policy.
#[test]
fn control_frames_are_never_dropped() {
    let (tx, mut rx) = outbox(3, OverflowPolicy::DropOldest);
    tx.try_push(control(0)).unwrap();
    tx.try_push(text(1)).unwrap();
    tx.try_push(control(2)).unwrap();
    assert_eq!(tx.try_push(text(3)), Ok(Queued::DroppedOldest));
    assert_eq!(
        take_now(&mut rx, 100),
        vec![control(0), control(2), text(3)]
    );
    for n in 0..3 {
        tx.try_push(control(n)).unwrap();
    }
    assert_eq!(tx.try_push(text(9)), Err(SendError::Overflow));
    assert!(matches!(
        rx.take_request(),
        Some(EndRequest::CloseNow(CloseCode::POLICY, reason)) if reason.starts_with("slow consumer")
    ));
}

/// Notices are outside the capacity but bounded by it: past as many streams with a notice
/// queued as the capacity, the queue is full and closes as a slow consumer.
#[test]
fn notices_are_bounded_by_the_capacity() {
    let (tx, mut rx) = outbox(2, OverflowPolicy::DropOldest);
    for n in 0..4 {
        assert!(
            tx.try_push(publication(&format!("room:{n}"), 1)).is_ok(),
            "{n}"
        );
    }
    // Two notices (room:0, room:1) and two live publications: room:2's notice would be a third.
    assert_eq!(tx.inner.state().queue.len(), 4);
    assert_eq!(
        tx.try_push(publication("room:4", 1)),
        Err(SendError::Overflow)
    );
    assert!(matches!(
        rx.take_request(),
        Some(EndRequest::CloseNow(CloseCode::POLICY, _))
    ));
}
