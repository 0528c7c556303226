//! Sinks over plain values, for driving the core without a runtime: the unit tests, the
//! simulation and the `client_session` fuzz target. Each answer is recorded, and a second answer
//! to one request, or an item pushed past a consumer's capacity, panics.

use std::{
    cell::{Cell, RefCell},
    collections::VecDeque,
    rc::Rc,
};

use signalr_protocol::{CompletionResult, Payload};

use super::{Answer, Room, Sinks, StreamSink};
use crate::error::Result;

/// The answers one request got: at most one.
pub(crate) struct Slot<T>(Rc<RefCell<Vec<Result<T>>>>);

impl<T> Clone for Slot<T> {
    fn clone(&self) -> Self {
        Self(Rc::clone(&self.0))
    }
}

impl<T> Slot<T> {
    pub(crate) fn new() -> Self {
        Self(Rc::default())
    }

    /// How many answers it got.
    pub(crate) fn answers(&self) -> usize {
        self.0.borrow().len()
    }

    /// The answer, if any.
    #[cfg(test)]
    pub(crate) fn take(&self) -> Option<Result<T>> {
        self.0.borrow_mut().pop()
    }
}

impl<T> Answer<T> for Slot<T> {
    fn answer(self, result: Result<T>) {
        let mut answers = self.0.borrow_mut();
        assert!(answers.is_empty(), "a request answered twice");
        answers.push(result);
    }
}

/// A stream consumer with `capacity` slots, the last kept for the end, as the shell's channel.
#[derive(Clone)]
pub(crate) struct Items {
    queue: Rc<RefCell<VecDeque<Result<Payload>>>>,
    pub(crate) capacity: usize,
    pub(crate) closed: Rc<Cell<bool>>,
}

impl Items {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            queue: Rc::default(),
            capacity: capacity.max(1),
            closed: Rc::default(),
        }
    }

    /// What the consumer takes next.
    pub(crate) fn take(&self) -> Option<Result<Payload>> {
        self.queue.borrow_mut().pop_front()
    }

    pub(crate) fn len(&self) -> usize {
        self.queue.borrow().len()
    }
}

impl StreamSink for Items {
    fn room(&self) -> Room {
        if self.closed.get() {
            Room::Closed
        } else if self.capacity - self.len() > 1 {
            Room::Free
        } else {
            Room::Full
        }
    }

    fn push(&self, item: Result<Payload>) {
        // An item only while a slot besides the last is free; an end always has the last.
        let free = self.capacity - self.len();
        if item.is_ok() {
            assert!(
                free > 1,
                "a stream item pushed into the slot kept for the end"
            );
        } else {
            assert!(free > 0, "a stream's end found no slot");
        }
        self.queue.borrow_mut().push_back(item);
    }
}

/// The plain-value sinks.
pub(crate) struct Fake;

impl Sinks for Fake {
    type Invoke = Slot<CompletionResult>;
    type Send = Slot<()>;
    type Stream = Items;
    type Stop = u32;
    type Reservation = ();
}
