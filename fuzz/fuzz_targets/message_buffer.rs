#![no_main]
//! `MessageBuffer` (stateful reconnect) driven by operation sequences decoded from the input:
//! differential against a reference model, and two buffers over a socket that breaks and
//! is replaced, where every message must arrive exactly once and in order.
use libfuzzer_sys::fuzz_target;
include!("message_buffer_model.rs");

fuzz_target!(|data: &[u8]| message_buffer(data));
