//! Replays the fuzz targets' committed inputs through the fuzz targets' own oracles, on stable
//! and without cargo-fuzz: `fuzz/seeds/<target>/` (hand-written and digest vectors) and
//! `fuzz/corpus-min/<target>/` (the smallest files of each minimised corpus). The oracle code
//! is the fuzz crate's, compiled here as modules. A failing file is named in the panic; run it
//! under the fuzzer with `cargo fuzz run <target> <file>` (see fuzz/README.md).

use std::{
    panic::{AssertUnwindSafe, catch_unwind},
    path::{Path, PathBuf},
};

#[path = "../../fuzz/fuzz_targets/common.rs"]
mod common;
#[path = "../../fuzz/fuzz_targets/message_buffer_model.rs"]
mod message_buffer_model;

/// The files committed for `target`, sorted.
fn inputs(target: &str) -> Vec<PathBuf> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut files: Vec<PathBuf> = ["seeds", "corpus-min"]
        .iter()
        .filter_map(|dir| std::fs::read_dir(fuzz.join(dir).join(target)).ok())
        .flatten()
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

/// Runs `oracle` on every committed input of `target`; fails naming each input that panicked.
fn replay(target: &str, oracle: fn(&[u8])) {
    let files = inputs(target);
    assert!(!files.is_empty(), "no inputs for {target}");
    let failed: Vec<String> = files
        .iter()
        .filter(|path| {
            let data = std::fs::read(path).expect("a readable input");
            catch_unwind(AssertUnwindSafe(|| oracle(&data))).is_err()
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(
        failed.is_empty(),
        "{target}: {} of {} inputs failed: {failed:#?}",
        failed.len(),
        files.len()
    );
}

#[test]
fn text_framing() {
    replay("text_framing", common::text_framing);
}

#[test]
fn binary_framing() {
    replay("binary_framing", common::binary_framing);
}

#[test]
fn json_message() {
    replay("json_message", common::json_message);
}

#[test]
fn msgpack_message() {
    replay("msgpack_message", common::msgpack_message);
}

#[test]
fn handshake() {
    replay("handshake", common::handshake);
}

#[test]
fn negotiate_response() {
    replay("negotiate_response", common::negotiate_response);
}

#[test]
fn message_buffer() {
    replay("message_buffer", message_buffer_model::message_buffer);
}
