#![no_main]
//! Negotiate response parsing: no panic, typed errors; what parses serializes and parses back to
//! the same value.
use libfuzzer_sys::fuzz_target;
use signalr_protocol::NegotiateResponse;

fuzz_target!(|data: &[u8]| {
    if let Ok(response) = NegotiateResponse::parse(data) {
        assert_eq!(NegotiateResponse::parse(&response.to_json()).expect("re-parses"), response);
    }
});
