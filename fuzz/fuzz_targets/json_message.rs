#![no_main]
//! One JSON message body: no panic; whatever parses re-encodes and parses to the same message;
//! binding payloads to a JSON value never panics.
use libfuzzer_sys::fuzz_target;
include!("common.rs");

fuzz_target!(|data: &[u8]| {
    let protocol = signalr_protocol::JsonHubProtocol::new();
    round_trip(&protocol, data);
    bind_payloads(&protocol, data);
});
