//! Which step a wake-up is for.
//!
//! A session's task has one waker, but its steps are woken by different things: the socket and
//! the handler's input queue wake the read step, whatever the handler awaits wakes the
//! handler, the outgoing queue and the timer wake the writer and the timers. A broadcast wakes
//! a session only to write; polling its reader and its handler as well would be most of the
//! cost of that wake-up. So the reader and the handler are polled with wakers of their own
//! ([`Part`]): each marks its step due, then wakes the task, and a step that is not due is
//! skipped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Wake, Waker};

/// One step's waker: marks the step due, then wakes the session's task.
pub(crate) struct Part {
    due: AtomicBool,
    task: RwLock<Option<Waker>>,
}

impl Part {
    /// A new part (due: a step runs on the first poll) and its waker.
    pub(crate) fn new() -> (Arc<Self>, Waker) {
        let part = Arc::new(Self {
            due: AtomicBool::new(true),
            task: RwLock::new(None),
        });
        let waker = Waker::from(part.clone());
        (part, waker)
    }

    /// Whether the step was woken since it last asked (and no longer).
    pub(crate) fn take(&self) -> bool {
        // A plain load first: most polls find nothing, and a swap would take the cache line.
        self.due.load(Ordering::Acquire) && self.due.swap(false, Ordering::AcqRel)
    }

    /// Sets the task's waker (when the task is polled with a new one).
    pub(crate) fn set_task(&self, waker: &Waker) {
        let mut task = self.task.write().unwrap_or_else(PoisonError::into_inner);
        match &*task {
            Some(current) if current.will_wake(waker) => {}
            _ => *task = Some(waker.clone()),
        }
    }
}

impl Wake for Part {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.due.store(true, Ordering::Release);
        let task = self.task.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(task) = &*task {
            task.wake_by_ref();
        }
    }
}

/// What `Waker::will_wake` compares: the data and vtable pointers (as numbers: compared,
/// never followed).
pub(crate) fn identity(waker: &Waker) -> (usize, usize) {
    (
        waker.data() as usize,
        std::ptr::from_ref(waker.vtable()) as usize,
    )
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    struct Counter(AtomicUsize);

    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_wake_marks_the_step_and_wakes_the_task() {
        let counter = Arc::new(Counter(AtomicUsize::new(0)));
        let task = Waker::from(counter.clone());
        let (part, waker) = Part::new();
        assert!(part.take(), "due at first");
        assert!(!part.take());
        // Before the task is known, a wake still marks the step.
        waker.wake_by_ref();
        assert!(part.take());
        part.set_task(&task);
        waker.wake_by_ref();
        // By value too (what a future that stored the waker does).
        let stored = waker.clone();
        stored.wake();
        assert_eq!(counter.0.load(Ordering::SeqCst), 2);
        assert!(part.take());
        assert!(!part.take());
    }
}
