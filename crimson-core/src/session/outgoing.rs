//! [`Outgoing`]: a message on its way to one session or many.

use std::fmt;
use std::sync::Arc;

use crate::message::Payload;
use crate::protocol::{Kind, LostReason, Position};
#[cfg(feature = "transport")]
use crate::transport::DeflateCache;

/// A message queued for a session: its own, or one shared by every recipient of a broadcast.
///
/// Cloning copies no bytes.
#[derive(Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// A message for one session.
    Single(Payload),
    /// A message for many sessions: encoded once, compressed once.
    Shared(SharedPayload),
    /// A frame of the Crimson protocol about a stream (`sub`, `unsub`, `lost`): what the
    /// client needs to keep its positions right, so a queue never drops it to make room
    /// (`OverflowPolicy::DropOldest` drops an older message instead; a queue holding only
    /// such frames is full).
    Control(Payload),
}

impl fmt::Debug for Outgoing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Single(payload) => f.debug_tuple("Single").field(payload).finish(),
            Self::Shared(shared) => f.debug_tuple("Shared").field(&shared.payload()).finish(),
            Self::Control(payload) => f.debug_tuple("Control").field(payload).finish(),
        }
    }
}

impl Outgoing {
    /// The encoded message.
    pub fn payload(&self) -> &Payload {
        match self {
            Self::Single(payload) | Self::Control(payload) => payload,
            Self::Shared(shared) => shared.payload(),
        }
    }

    /// The position of the publication this frame carries, when it is one (a `pub` frame of
    /// the Crimson protocol, made by a cluster with history).
    pub fn position(&self) -> Option<&Position> {
        match self {
            Self::Single(_) | Self::Control(_) => None,
            Self::Shared(shared) => shared.position(),
        }
    }

    /// Whether a queue may drop this message to make room: anything but a
    /// [`Control`](Self::Control) frame.
    pub fn is_droppable(&self) -> bool {
        !matches!(self, Self::Control(_))
    }

    /// What a queue that drops this message queues in its place: for a publication, a `lost`
    /// frame of its stream (reason [`LostReason::Dropped`], at its position, in its framing),
    /// so that the client is told of the gap where the publication would have been; for any
    /// other message, nothing.
    pub fn dropped_notice(&self) -> Option<Outgoing> {
        let position = self.position()?;
        let empty = match self.payload() {
            Payload::Text(_) => Payload::Text("".into()),
            Payload::Binary(_) => Payload::Binary(Default::default()),
        };
        let notice = crate::protocol::write(
            Kind::Lost {
                position: position.clone(),
                reason: LostReason::Dropped.as_str().to_owned(),
            },
            &empty,
        );
        Some(Self::Control(notice))
    }

    /// Where a compressed form shared by every recipient is kept, for a broadcast.
    #[cfg(feature = "transport")]
    pub fn deflate_cache(&self) -> Option<&DeflateCache> {
        match self {
            Self::Single(_) | Self::Control(_) => None,
            Self::Shared(shared) => Some(&shared.inner.deflate),
        }
    }
}

/// A payload shared by the recipients of a broadcast, with the forms made from it once for
/// all of them (its compressed bytes).
///
/// Cloning copies no bytes.
#[derive(Clone)]
pub struct SharedPayload {
    inner: Arc<Inner>,
}

struct Inner {
    payload: Payload,
    /// Where this publication stands in its stream (a `pub` frame), if it is one.
    position: Option<Position>,
    #[cfg(feature = "transport")]
    deflate: DeflateCache,
}

impl PartialEq for SharedPayload {
    fn eq(&self, other: &Self) -> bool {
        self.payload() == other.payload()
    }
}

impl Eq for SharedPayload {}

impl fmt::Debug for SharedPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SharedPayload")
            .field(self.payload())
            .finish()
    }
}

impl SharedPayload {
    /// Shares `payload`.
    pub fn new(payload: Payload) -> Self {
        Self {
            inner: Arc::new(Inner {
                payload,
                position: None,
                #[cfg(feature = "transport")]
                deflate: DeflateCache::new(),
            }),
        }
    }

    /// Shares `payload`, a `pub` frame of the publication at `position`: a queue that drops
    /// it tells the client (see [`Outgoing::dropped_notice`]).
    pub fn publication(payload: Payload, position: Position) -> Self {
        Self {
            inner: Arc::new(Inner {
                payload,
                position: Some(position),
                #[cfg(feature = "transport")]
                deflate: DeflateCache::new(),
            }),
        }
    }

    /// Whether `self` and `other` are handles on the same payload (made once, shared).
    pub fn ptr_eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// The encoded message.
    pub fn payload(&self) -> &Payload {
        &self.inner.payload
    }

    /// The publication's position, if it is a `pub` frame made with
    /// [`publication`](Self::publication).
    pub fn position(&self) -> Option<&Position> {
        self.inner.position.as_ref()
    }
}
