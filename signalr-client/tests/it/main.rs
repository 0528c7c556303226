//! The client end to end against the test server: one test binary, a module per area.
#![allow(clippy::unwrap_used)]

mod api;
mod backpressure;
mod credentials;
mod faults;
mod first_hour;
mod order;
mod reconnect;
mod stateful;
mod support;
mod target;
mod timing;
mod violations;
mod zero_loss;
