//! Replays the `sse_parser` fuzz target's committed inputs (`fuzz/seeds/sse_parser/` and
//! `fuzz/corpus-min/sse_parser/`) through its oracles, on stable and without cargo-fuzz. The
//! oracle code is the fuzz crate's, compiled here as a module.

use std::{
    panic::{AssertUnwindSafe, catch_unwind},
    path::{Path, PathBuf},
};

#[path = "../../fuzz/fuzz_targets/sse_model.rs"]
mod sse_model;

#[test]
fn sse_parser() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut files: Vec<PathBuf> = ["seeds", "corpus-min"]
        .iter()
        .filter_map(|dir| std::fs::read_dir(fuzz.join(dir).join("sse_parser")).ok())
        .flatten()
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no inputs");
    let failed: Vec<String> = files
        .iter()
        .filter(|path| {
            let data = std::fs::read(path).expect("a readable input");
            catch_unwind(AssertUnwindSafe(|| sse_model::sse_parser(&data))).is_err()
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} inputs failed: {failed:#?}",
        failed.len(),
        files.len()
    );
}
