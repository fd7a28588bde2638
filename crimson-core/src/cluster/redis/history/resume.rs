//! A resume on a node with history in Redis: the missed publications are read from the
//! stream's history, then the answer is queued under the stream's lock (where this node
//! stands then decides what is sent live instead).

use std::sync::Weak;

use super::arrive::admit;
use super::tasks::read_range;
use super::NodeHistory;
use crate::cluster::local::backed::{lost_frame, recovered_frame, View};
use crate::cluster::redis::Node;
use crate::message::Payload;
use crate::protocol::{Kind, LostReason, Position};
use crate::session::{Outgoing, SessionHandle, SessionId};

/// What a resume is answered with.
#[derive(Debug)]
enum Answer {
    /// In `epoch`, the publications after the client's position up to `upto`.
    Recovered {
        epoch: String,
        upto: u64,
        missed: Vec<(u64, Payload)>,
    },
    Lost(LostReason),
}

/// Answers session `id`'s resume from `from` (a stream it follows here).
pub(super) async fn run(weak: Weak<Node>, id: SessionId, from: Position) {
    let Some(node) = weak.upgrade() else { return };
    let Some(history) = super::of(&node) else {
        return;
    };
    let answer = find(&node, history, &from).await;
    node.local.answer_resume(id, &from.stream, |handle, view| {
        frames(handle, &from, view, answer)
    });
}

/// What the client at `from` missed, read from Redis.
async fn find(node: &Node, history: &NodeHistory, from: &Position) -> Answer {
    if !history
        .ensure_warm(node, &from.stream, node.timeout * 2)
        .await
    {
        return Answer::Lost(LostReason::Unavailable);
    }
    let Some((epoch, last)) = node.local.stream_view(&from.stream) else {
        return Answer::Lost(LostReason::Unavailable);
    };
    if from.epoch != epoch {
        return Answer::Lost(LostReason::EpochChanged);
    }
    // The client may be ahead of this node (it came from a node that had delivered more):
    // then nothing is missed here, if Redis has had that position.
    let missed = last.saturating_sub(from.offset);
    let over_limit = missed > history.settings.limit() as u64;
    // Past the limit, the first one tells whether they are gone anyway (a reason first).
    let count = if over_limit { 1 } else { missed };
    let read = match read_range(node, history, &from.stream, (from.offset + 1, last), count).await {
        Ok(read) => read,
        Err(err) => {
            node.reports.history_failed(&format_args!(
                "stream {}: cannot read what a client missed: {err}",
                from.stream
            ));
            return Answer::Lost(LostReason::Unavailable);
        }
    };
    let Some((now_epoch, now_last)) = &read.stream else {
        return Answer::Lost(LostReason::EpochChanged);
    };
    if *now_epoch != epoch {
        // Redis lost the stream since this node last heard of it.
        super::catch_up(node);
        return Answer::Lost(LostReason::EpochChanged);
    }
    if from.offset > *now_last {
        return Answer::Lost(LostReason::Unknown);
    }
    let complete = read.entries.len() as u64 == count
        && read
            .entries
            .iter()
            .zip(from.offset + 1..)
            .all(|(entry, offset)| entry.offset == offset);
    if !complete {
        return Answer::Lost(read.gone(&history.settings, from.offset + 1));
    }
    let ttl = super::read::ms(history.settings.ttl());
    if ttl > 0
        && read
            .entries
            .first()
            .is_some_and(|oldest| read.now.saturating_sub(oldest.at) >= ttl)
    {
        return Answer::Lost(LostReason::Expired);
    }
    if over_limit {
        return Answer::Lost(LostReason::OverLimit);
    }
    let mut missed = Vec::with_capacity(read.entries.len());
    for entry in read.entries {
        let Some(admitted) = admit(node, entry.message, None, Some(&from.stream)) else {
            // Not Crimson's (counted): it cannot be recovered.
            return Answer::Lost(LostReason::Unavailable);
        };
        missed.push((entry.offset, admitted.payload));
    }
    Answer::Recovered {
        epoch,
        upto: last.max(from.offset),
        missed,
    }
}

/// The frames of the answer for `handle`, under the stream's lock (`view`: where this node
/// stands now), its outcome (`recovered` or the `lost` reason) and how many it recovered.
fn frames(
    handle: &SessionHandle,
    from: &Position,
    view: Option<View>,
    answer: Answer,
) -> (Vec<Outgoing>, &'static str, usize) {
    let lost =
        |now, reason: LostReason| (vec![lost_frame(handle, now, reason)], reason.as_str(), 0);
    let (epoch_now, last_now) = view.unwrap_or_default();
    let now = Position {
        stream: from.stream.clone(),
        epoch: epoch_now,
        offset: last_now,
    };
    let (epoch, upto, missed) = match answer {
        Answer::Recovered {
            epoch,
            upto,
            missed,
        } if epoch == now.epoch => (epoch, upto, missed),
        Answer::Recovered { .. } => return lost(now, LostReason::EpochChanged),
        Answer::Lost(reason) => return lost(now, reason),
    };
    let at = |offset| Position {
        stream: from.stream.clone(),
        epoch: epoch.clone(),
        offset,
    };
    let mut frames = Vec::with_capacity(missed.len() + 1);
    frames.push(recovered_frame(handle, at(upto), missed.len() as u64));
    for (offset, payload) in missed {
        match handle.transcode_as(&Kind::Publication(at(offset)), &payload) {
            Ok(frame) => frames.push(Outgoing::Single(frame)),
            Err(err) => {
                tracing::warn!(%err, stream = %from.stream, "a kept publication did not re-encode for a recovery");
                return lost(now, LostReason::Unknown);
            }
        }
    }
    let recovered = frames.len() - 1;
    (frames, "recovered", recovered)
}
