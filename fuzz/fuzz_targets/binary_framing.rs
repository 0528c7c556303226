#![no_main]
//! VarInt framing and the MessagePack protocol over a chunked stream: no panic, split
//! invariance, bounded buffering, the 2 GiB rule.
use libfuzzer_sys::fuzz_target;
include!("common.rs");

fuzz_target!(|data: &[u8]| {
    split_invariance(Arc::new(signalr_protocol::MessagePackHubProtocol::new().with_max_message_size(256)), data);
});
