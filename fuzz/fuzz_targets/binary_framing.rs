#![no_main]
#![allow(dead_code)] // common.rs holds every decoder target's oracle
//! VarInt framing and the MessagePack protocol over a chunked stream (oracles in common.rs).
use libfuzzer_sys::fuzz_target;
include!("common.rs");

fuzz_target!(|data: &[u8]| binary_framing(data));
