//! The connection core (`src/core/`) is sans-IO: no runtime, no clock, no I/O. (That no crate
//! of the workspace has an import cycle is checked by `examples/tests/layout.rs`.)
#![allow(clippy::unwrap_used)]

use std::path::Path;

/// The core's files but its tests (which read one base instant), as (path, code without
/// comments).
fn core_files() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/core");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.extension().is_some_and(|e| e == "rs") && name != "tests.rs" {
            files.push((
                name,
                strip_comments(&std::fs::read_to_string(&path).unwrap()),
            ));
        }
    }
    files.sort();
    files
}

fn strip_comments(code: &str) -> String {
    code.lines()
        .map(|l| l.split("//").next().unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

/// What a sans-IO file must not name: a runtime, a clock read, I/O, tasks, waiting.
const NOT_SANS_IO: [&str; 12] = [
    "tokio",
    "Instant::now",
    "SystemTime::now",
    "rt::now",
    "std::net",
    "std::fs",
    "std::thread",
    "std::io::",
    "spawn",
    "async ",
    ".await",
    "reqwest",
];

fn violations(code: &str) -> Vec<&'static str> {
    NOT_SANS_IO
        .into_iter()
        .filter(|w| code.contains(w))
        .collect()
}

#[test]
fn the_connection_core_is_sans_io() {
    let files = core_files();
    assert!(files.iter().any(|(name, _)| name == "mod.rs"), "{files:?}");
    for (name, code) in &files {
        let found = violations(code);
        assert!(found.is_empty(), "src/core/{name} names {found:?}");
    }
    // The check bites: the shell names all of that.
    let shell =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/driver.rs"))
            .unwrap();
    assert!(violations(&strip_comments(&shell)).contains(&"tokio"));
}
