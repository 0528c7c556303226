//! The crate's modules form a DAG (no import cycles), leaves first: `state` → `error` → `core`
//! → `handlers` → `shared` → `command` → `stream`, `upload` → `driver` → `connection` →
//! `builder` (the layout of `shared/design/architecture-review.md` §4.1). A cycle would put a
//! type in the wrong place again; this reads the sources and names the cycle. And the
//! connection core (`src/core/`) is sans-IO: no runtime, no clock, no I/O.
#![allow(clippy::unwrap_used)]

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

/// The first path segments named after `crate::` in `code` (comments left out), in
/// `crate::a::b`, `crate::{a::b, c}` and `crate::Name` forms.
fn crate_paths(code: &str) -> Vec<String> {
    let code: String = code
        .lines()
        .map(|l| l.split("//").next().unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = Vec::new();
    let mut rest = code.as_str();
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(block) = rest.strip_prefix('{') {
            // Top-level items of the braces.
            let (mut depth, mut item) = (0, String::new());
            for c in block.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.push(std::mem::take(&mut item));
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
            out.push(item);
        } else {
            out.push(
                rest.chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect(),
            );
        }
    }
    out.into_iter()
        .map(|p| p.trim().split("::").next().unwrap().trim().to_owned())
        .filter(|p| !p.is_empty() && p != "self")
        .collect()
}

/// Depth-first from `m`, panicking with the path of the first cycle.
fn visit<'a>(
    m: &'a str,
    edges: &'a BTreeMap<&'a str, BTreeSet<String>>,
    path: &mut Vec<&'a str>,
    done: &mut BTreeSet<&'a str>,
) {
    if let Some(i) = path.iter().position(|p| *p == m) {
        panic!("import cycle: {} -> {m}", path[i..].join(" -> "));
    }
    if !done.insert(m) {
        return;
    }
    path.push(m);
    for t in &edges[m] {
        visit(t, edges, path, done);
    }
    path.pop();
}

#[test]
fn the_modules_form_a_dag() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut modules = BTreeMap::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            modules.insert(name, std::fs::read_to_string(&path).unwrap());
        }
    }
    // A module in a directory is one module: its files together.
    let core = core_files()
        .into_iter()
        .map(|(_, code)| code)
        .collect::<String>();
    modules.insert("core".to_owned(), core);
    let lib = modules.remove("lib").unwrap();
    // Names re-exported at the crate root, back to the module that defines them.
    let mut reexports = BTreeMap::new();
    for line in lib.lines().filter(|l| l.starts_with("pub use ")) {
        let path = line["pub use ".len()..].trim_end_matches(';');
        let Some((module, names)) = path.split_once("::") else {
            continue;
        };
        for name in names.trim_matches(|c| c == '{' || c == '}').split(',') {
            reexports.insert(name.trim().to_owned(), module.to_owned());
        }
    }
    let mut edges: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for (name, code) in &modules {
        let targets = crate_paths(code)
            .into_iter()
            .filter_map(|p| {
                if modules.contains_key(&p) {
                    Some(p)
                } else {
                    reexports.get(&p).cloned()
                }
            })
            .filter(|t| t != name)
            .collect();
        edges.insert(name, targets);
    }
    let mut done = BTreeSet::new();
    for m in edges.keys() {
        visit(m, &edges, &mut Vec::new(), &mut done);
    }
    // The check sees the imports at all: the connection depends on the driver, the driver on
    // the core.
    assert!(edges["connection"].contains("driver"), "{edges:?}");
    assert!(edges["driver"].contains("core"), "{edges:?}");
}

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
