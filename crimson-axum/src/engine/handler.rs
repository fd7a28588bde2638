//! The handler step: the user's future, polled by the session's own task with a waker of its
//! own (so that a wake-up for writing skips it), and the guard that turns a panic in any step
//! running user code (a codec, a hook, the handler) into the session's end with 1011.

use std::panic::AssertUnwindSafe;
use std::task::{Context, Poll};

use crimson_core::transport::Transport;
use crimson_core::CrimsonMessage;

use super::ending::Event;
use super::Task;
use crate::error::SessionError;

impl<T, Up> Task<T, Up>
where
    T: Transport,
    Up: CrimsonMessage,
{
    /// Runs one step that may call user code (a codec's decode, a hook), catching a panic:
    /// the session then ends as a server failure would, with 1011 after what is queued, and
    /// nothing more is read.
    pub(super) fn guarded(&mut self, step: &str, run: impl FnOnce(&mut Self) -> bool) -> bool {
        match std::panic::catch_unwind(AssertUnwindSafe(|| run(self))) {
            Ok(progress) => progress,
            Err(panic) => {
                let message = panic_message(panic);
                tracing::error!(panic = %message, "the session's {step} panicked");
                // Not reported through `on_error`: that hook may be what panicked.
                self.read_done = true;
                self.events.push(Event::HandlerPanicked);
                true
            }
        }
    }

    /// Polls the handler, catching a panic.
    pub(super) fn poll_handler(&mut self) -> bool {
        if self.handler_part.take() {
            self.handler_due = true;
        }
        let Some(handler) = self.handler.as_mut().filter(|_| self.handler_due) else {
            return false;
        };
        let mut cx = Context::from_waker(&self.handler_waker);
        let polled = std::panic::catch_unwind(AssertUnwindSafe(|| handler.as_mut().poll(&mut cx)));
        match polled {
            Ok(Poll::Pending) => {
                // Waiting: woken through its waker.
                self.handler_due = false;
                false
            }
            Ok(Poll::Ready(())) => {
                self.handler = None;
                self.handler_until = None;
                self.events.push(Event::HandlerReturned);
                true
            }
            Err(panic) => {
                self.handler = None;
                self.handler_until = None;
                let message = panic_message(panic);
                tracing::error!(panic = %message, "session handler panicked");
                self.settings
                    .report(&self.shared.info, &SessionError::HandlerPanic(message));
                self.events.push(Event::HandlerPanicked);
                true
            }
        }
    }
}

fn panic_message(panic: Box<dyn std::any::Any + Send>) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "non-text panic payload".to_owned()
    }
}
