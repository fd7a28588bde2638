//! Streams whose publications another source numbers (Redis, for every node on it): this
//! node does not assign offsets, it delivers each publication at the position it was given,
//! in order, and keeps only where its sessions stand (`epoch`, `last`). The source decides
//! what to deliver when ([`Source`]); everything here happens under the stream's lock, so
//! that `sub` frames, publications, `lost` frames and recoveries reach each session in one
//! order, as with a stream of this node's own.
// The only source so far is Redis's.
#![cfg_attr(not(feature = "redis"), allow(dead_code))]

use std::sync::Arc;
use std::time::Instant;

use super::{empty_frame, subscribed, LocalCluster, Variants};
use crate::cluster::metrics as broadcast_metrics;
use crate::cluster::streams::{self, History, Source, Stream, Streams};
use crate::cluster::{Delivery, Target};
use crate::message::Payload;
use crate::protocol::{Kind, LostReason, Position};
use crate::session::{Outgoing, SessionHandle, SessionId};

/// Where a backed stream stands on this node: its epoch and the last offset delivered.
pub(crate) type View = (String, u64);

impl LocalCluster {
    /// Turns history on with positions from `source`: this node numbers nothing itself. An
    /// error (the settings kept) if history is already on, in memory or with other settings.
    pub(crate) fn set_backed_history(
        &self,
        history: History,
        source: Arc<dyn Source>,
    ) -> Result<(), History> {
        let streams = self
            .inner
            .streams
            .get_or_init(|| Streams::backed(history, source));
        if streams.history == history && streams.source.is_some() {
            Ok(())
        } else {
            Err(streams.history)
        }
    }

    /// Whether history is on with positions from a source.
    pub(crate) fn is_backed(&self) -> bool {
        self.backed().is_some()
    }

    fn backed(&self) -> Option<&Streams> {
        self.inner.streams.get().filter(|s| s.source.is_some())
    }

    /// Asks the source to warm the stream `name` up (it has recipients here).
    pub(super) fn warm_up(&self, name: &str) {
        if let Some(source) = self.backed().and_then(|s| s.source.as_ref()) {
            source.follow(name);
        }
    }

    /// Where this node stands in the backed stream `name`; `None` until it is warm.
    pub(crate) fn stream_view(&self, name: &str) -> Option<View> {
        let stream = self.backed()?.get(name)?;
        let stream = streams::lock(&stream);
        stream.warm.then(|| (stream.epoch.clone(), stream.last))
    }

    /// The backed streams this node keeps that are warm.
    pub(crate) fn warm_streams(&self) -> Vec<String> {
        let Some(streams) = self.backed() else {
            return Vec::new();
        };
        streams
            .names()
            .into_iter()
            .filter(|name| streams.get(name).is_some_and(|s| streams::lock(&s).warm))
            .collect()
    }

    /// Whether any session of this node gets the publications of stream `name`: every
    /// session for `all`, the room's members for `room:…`.
    pub(crate) fn has_recipients(&self, name: &str) -> bool {
        let state = self.read();
        match name.strip_prefix("room:") {
            Some(room) => state.rooms.get(room).is_some_and(|m| !m.is_empty()),
            None => !state.sessions.is_empty(),
        }
    }

    /// The sessions of the protocol that follow stream `name` on this node.
    fn followers(&self, name: &str) -> Vec<SessionHandle> {
        let target = match name.strip_prefix("room:") {
            Some(room) => Target::Room(room.to_owned()),
            None => Target::All,
        };
        let mut handles = self.handles(&target);
        handles.retain(SessionHandle::is_framed);
        handles
    }

    /// Delivers the publication at `position` to the sessions `target` names, if it is the
    /// next of its stream here (warm, same epoch, offset `last + 1`): `None` otherwise, and
    /// nothing is delivered. `position.stream` must be `target`'s stream.
    pub(crate) fn deliver_next(
        &self,
        payload: &Payload,
        target: &Target,
        position: Position,
    ) -> Option<Delivery> {
        let streams = self.backed()?;
        let stream = streams.get(&position.stream)?;
        let mut stream = streams::lock(&stream);
        let next = stream.warm
            && stream.epoch == position.epoch
            && stream.last.checked_add(1) == Some(position.offset);
        if !next {
            return None;
        }
        let started = broadcast_metrics::start();
        stream.last = position.offset;
        stream.used = Instant::now();
        let mut variants = Variants::new(payload, None);
        variants.kind = Kind::Publication(position);
        let delivery = self.offer_target(&mut variants, target);
        drop(stream);
        self.metrics().record(Some(target), started, &delivery);
        Some(delivery)
    }

    /// The stream `name` is warm: where this node stands is `epoch`, `last`. The sessions
    /// waiting for their position are told.
    pub(crate) fn warm_stream(&self, name: &str, epoch: &str, last: u64) {
        let Some(streams) = self.backed() else { return };
        let stream = streams.get_or_make(name);
        let mut stream = streams::lock(&stream);
        set(&mut stream, name, epoch, last);
    }

    /// What the sessions following stream `name` missed cannot be delivered: each is sent
    /// `lost` with `reason`, and the stream goes on after `position` (where this node now
    /// stands).
    pub(crate) fn stream_lost(&self, position: &Position, reason: LostReason) {
        let Some(streams) = self.backed() else { return };
        let stream = streams.get_or_make(&position.stream);
        let mut stream = streams::lock(&stream);
        set(
            &mut stream,
            &position.stream,
            &position.epoch,
            position.offset,
        );
        let kind = Kind::Lost {
            position: position.clone(),
            reason: reason.to_string(),
        };
        for handle in self.followers(&position.stream) {
            let frame = empty_frame(&handle, kind.clone());
            if let Err(err) = handle.deliver(Outgoing::Control(frame)) {
                tracing::debug!(%err, session_id = %handle.id(), "a stream's gap was not told");
            }
        }
    }

    /// Forgets where this node stands in stream `name` if no session here gets it any more
    /// (its channel is left): it is warmed up again when one does. False if one does.
    pub(crate) fn cool_stream(&self, name: &str) -> bool {
        let Some(streams) = self.backed() else {
            return false;
        };
        let Some(stream) = streams.get(name) else {
            return true;
        };
        let mut stream = streams::lock(&stream);
        // Under the stream's lock: a session of the protocol joins under it too.
        if self.has_recipients(name) {
            return false;
        }
        stream.warm = false;
        stream.epoch.clear();
        stream.last = 0;
        stream.pending.clear();
        true
    }

    /// Answers a resume of session `id` in stream `name`, under the stream's lock: `answer`
    /// makes the frames from the session and where this node stands (`None`: not warm), and
    /// says how it went (`recovered` with the publications sent, or a `lost` reason), as
    /// `crimson_recoveries_total` counts it.
    pub(crate) fn answer_resume(
        &self,
        id: SessionId,
        name: &str,
        answer: impl FnOnce(&SessionHandle, Option<View>) -> (Vec<Outgoing>, &'static str, usize),
    ) {
        let Some(streams) = self.backed() else { return };
        let stream = streams.get_or_make(name);
        let stream = streams::lock(&stream);
        let Some(handle) = self.get(id) else { return };
        if !self.follows(id, name) {
            // It left the room while Redis was read: told `unsub`, its client forgot it.
            return;
        }
        let view = stream.warm.then(|| (stream.epoch.clone(), stream.last));
        let (frames, outcome, recovered) = answer(&handle, view);
        self.metrics().recovery(outcome, recovered);
        if let Err(err) = handle.deliver_all(frames) {
            tracing::debug!(%err, session_id = %id, "a recovery was not queued");
        }
    }
}

/// Sets where this node stands in a stream; when it was not warm, the sessions waiting for
/// their position are told this one.
fn set(stream: &mut Stream, name: &str, epoch: &str, last: u64) {
    stream.epoch.clear();
    stream.epoch.push_str(epoch);
    stream.last = last;
    stream.used = Instant::now();
    if !stream.warm {
        stream.warm = true;
        let position = stream.position(name);
        for handle in std::mem::take(&mut stream.pending) {
            subscribed(&handle, position.clone());
        }
    }
}

/// A `lost` frame for `handle` at `position`.
pub(crate) fn lost_frame(
    handle: &SessionHandle,
    position: Position,
    reason: LostReason,
) -> Outgoing {
    Outgoing::Control(empty_frame(
        handle,
        Kind::Lost {
            position,
            reason: reason.to_string(),
        },
    ))
}

/// A `recovered` frame for `handle`: `count` publications follow, the last at `position`.
pub(crate) fn recovered_frame(handle: &SessionHandle, position: Position, count: u64) -> Outgoing {
    Outgoing::Single(empty_frame(handle, Kind::Recovered { position, count }))
}
