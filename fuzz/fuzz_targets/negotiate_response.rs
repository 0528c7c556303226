#![no_main]
#![allow(dead_code)] // common.rs holds every decoder target's oracle
//! Negotiate response parsing (oracles in common.rs).
use libfuzzer_sys::fuzz_target;
include!("common.rs");

fuzz_target!(|data: &[u8]| negotiate_response(data));
