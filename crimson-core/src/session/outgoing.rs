//! [`Outgoing`]: a message on its way to one session or many.

use std::fmt;
use std::sync::Arc;

use crate::message::Payload;
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
}

impl fmt::Debug for Outgoing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Single(payload) => f.debug_tuple("Single").field(payload).finish(),
            Self::Shared(shared) => f.debug_tuple("Shared").field(&shared.payload()).finish(),
        }
    }
}

impl Outgoing {
    /// The encoded message.
    pub fn payload(&self) -> &Payload {
        match self {
            Self::Single(payload) => payload,
            Self::Shared(shared) => shared.payload(),
        }
    }

    /// Where a compressed form shared by every recipient is kept, for a broadcast.
    #[cfg(feature = "transport")]
    pub fn deflate_cache(&self) -> Option<&DeflateCache> {
        match self {
            Self::Single(_) => None,
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
}
