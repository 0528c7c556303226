#![no_main]
//! The Server-Sent Events parsing of signalr-transport (eventsource-stream behind the line
//! limit): no panic; whole and chunked give a reference parser's events; on invalid input
//! (not UTF-8, a line or an event over the limit) the error comes as soon as the bad byte is in.
use libfuzzer_sys::fuzz_target;
include!("sse_model.rs");

fuzz_target!(|data: &[u8]| sse_parser(data));
