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

fn bind_payloads(protocol: &dyn HubProtocol, body: &[u8]) {
    use signalr_protocol::{CompletionResult, HubMessage};
    let Ok(Decoded::Message(m)) = protocol.parse_message(body) else { return };
    match m {
        HubMessage::Invocation(i) => {
            let _ = i.arguments.deserialize::<serde_json::Value>();
            let _ = i.arguments.to_payloads();
        }
        HubMessage::StreamItem(i) => drop(i.item.deserialize::<serde_json::Value>()),
        HubMessage::Completion(c) => {
            if let CompletionResult::Value(v) = c.result {
                let _ = v.deserialize::<serde_json::Value>();
            }
        }
        _ => {}
    }
}
