#![no_main]
//! Text framing and the JSON protocol over a chunked stream: no panic, split invariance, bounded
//! buffering (the limit is small so the fuzzer reaches it).
use libfuzzer_sys::fuzz_target;
include!("common.rs");

fuzz_target!(|data: &[u8]| {
    split_invariance(Arc::new(signalr_protocol::JsonHubProtocol::new().with_max_message_size(256)), data);
});
