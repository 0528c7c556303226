#![no_main]
//! The client's connection core driven directly: no runtime per input, one input is a few
//! thousand calls on plain values (`signalr_client::fuzzing::client_session`, whose doc gives
//! the input's layout and the oracles: no panic, no request answered twice, no stream item past
//! its consumer's room, no timer left due, and a stop at the end that answers every call and
//! ends the connection). The end-to-end target over the in-memory transport is
//! `client_connection`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    signalr_client::fuzzing::client_session(data);
});
