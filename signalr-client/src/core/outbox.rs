//! The calls waiting for the connection: made while reconnecting, or while the replay buffer
//! is full, sent in order once there is room.

use std::collections::VecDeque;

use super::request::{Request, Sinks};

/// The outbox. Its capacity bounds the calls whose callers still wait for an answer; sends
/// already reported done (admitted while connected, against the replay buffer's room or the
/// command queue's) and upload items of calls in flight are bounded where they were admitted
/// and always join it, since refusing them would lose them silently.
pub(crate) struct Outbox<S: Sinks> {
    queue: VecDeque<Request<S>>,
    /// How many queued requests count against the capacity.
    waiting: usize,
}

impl<S: Sinks> Default for Outbox<S> {
    fn default() -> Self {
        Self {
            queue: VecDeque::new(),
            waiting: 0,
        }
    }
}

/// Whether `request` counts against the outbox's capacity.
fn counted<S: Sinks>(request: &Request<S>) -> bool {
    !matches!(
        request,
        Request::Send { reply: None, .. } | Request::UploadItem { .. } | Request::UploadDone { .. }
    )
}

impl<S: Sinks> Outbox<S> {
    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Whether `request` may join with `capacity`: always for those not counted against it.
    pub(crate) fn has_room_for(&self, request: &Request<S>, capacity: usize) -> bool {
        !counted(request) || self.waiting < capacity
    }

    pub(crate) fn push_back(&mut self, request: Request<S>) {
        self.waiting += usize::from(counted(&request));
        self.queue.push_back(request);
    }

    pub(crate) fn pop_front(&mut self) -> Option<Request<S>> {
        let request = self.queue.pop_front()?;
        self.waiting -= usize::from(counted(&request));
        Some(request)
    }

    /// Forgets stream `id` if it is still queued; `true` if it was.
    pub(crate) fn remove_stream(&mut self, id: &str) -> bool {
        let before = self.queue.len();
        self.queue
            .retain(|r| !matches!(r, Request::Stream { id: queued, .. } if queued == id));
        let removed = before - self.queue.len();
        self.waiting -= removed;
        removed > 0
    }

    /// Everything queued, in order, leaving the outbox empty.
    pub(crate) fn take(&mut self) -> VecDeque<Request<S>> {
        self.waiting = 0;
        std::mem::take(&mut self.queue)
    }
}
