//! No crate of the workspace has an import cycle between its modules: each crate's modules form
//! a DAG, leaves first (the layouts of `shared/design/architecture-review.md` §4). Module cycles
//! are legal Rust, but each one put a type in the wrong place and blocked testing a piece on its
//! own; this reads the sources and names the first cycle it finds.
//!
//! A module is a file `src/name.rs` or a directory `src/name/` (all its files, with
//! `src/name.rs` if there is one). An edge `a → b` is a `crate::b` path in `a`, or a
//! `crate::Name` that `lib.rs` re-exports from `b`. `lib.rs` and `main.rs` are the roots and
//! are no node; comments and unit tests are left out.
#![allow(clippy::unwrap_used)]

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

/// `code` without comments and without its unit tests (a `#[cfg(test)] mod`, which by the
/// house style closes a file): a test module may use a test helper that uses the module.
fn production_code(code: &str) -> String {
    let code = code
        .lines()
        .map(|l| l.split("//").next().unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    let mut end = code.len();
    let mut from = 0;
    while let Some(i) = code[from..].find("#[cfg(test)]") {
        let at = from + i;
        if code[at + "#[cfg(test)]".len()..]
            .trim_start()
            .starts_with("mod ")
        {
            end = at;
            break;
        }
        from = at + 1;
    }
    code[..end].to_owned()
}

/// The items of the braces that `block` starts inside of (its text right after `{`), top level
/// only, each trimmed.
fn brace_items(block: &str) -> Vec<String> {
    let (mut depth, mut item, mut out) = (0, String::new(), Vec::new());
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
    out.into_iter()
        .map(|i| i.trim().to_owned())
        .filter(|i| !i.is_empty())
        .collect()
}

/// The first segment of every path named after `crate::` in `code`, in the `crate::a::b`,
/// `crate::{a::b, c}` and `crate::Name` forms.
fn crate_paths(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let boundary = i == 0 || {
            let before = rest.as_bytes()[i - 1];
            !(before.is_ascii_alphanumeric() || before == b'_' || before == b'$')
        };
        rest = &rest[i + "crate::".len()..];
        if !boundary {
            continue; // `$crate::` in a macro, or a longer identifier
        }
        let firsts = match rest.strip_prefix('{') {
            Some(block) => brace_items(block),
            None => vec![
                rest.chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect(),
            ],
        };
        out.extend(
            firsts
                .into_iter()
                .map(|p| p.split("::").next().unwrap().trim().to_owned())
                .filter(|p| !p.is_empty() && p != "self"),
        );
    }
    out
}

/// `lib.rs`'s re-exports from its own modules: exported name → module.
fn reexports(lib: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    let mut rest = lib;
    while let Some(i) = rest.find("pub use ") {
        rest = &rest[i + "pub use ".len()..];
        let statement = &rest[..rest.find(';').unwrap_or(rest.len())];
        let Some((module, names)) = statement.split_once("::") else {
            continue;
        };
        let names = match names.trim().strip_prefix('{') {
            Some(block) => brace_items(block),
            None => vec![names.trim().to_owned()],
        };
        for name in names {
            // `a::B` → B, `X as Y` → Y.
            let name = name.rsplit(" as ").next().unwrap();
            let name = name.rsplit("::").next().unwrap().trim();
            map.insert(name.to_owned(), module.trim().to_owned());
        }
    }
    map
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.file_stem().is_some_and(|s| s == "tests") {
            continue; // unit tests: `tests.rs`, `tests/`
        }
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// The module graph of the crate in `crate_dir`: module → the modules it names.
fn module_graph(crate_dir: &str) -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(crate_dir)
        .join("src");
    let mut modules: BTreeMap<String, String> = BTreeMap::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let code = if path.is_dir() {
            rust_files(&path)
                .iter()
                .map(|f| production_code(&std::fs::read_to_string(f).unwrap()))
                .collect::<Vec<_>>()
                .join("\n")
        } else if path.extension().is_some_and(|e| e == "rs") {
            production_code(&std::fs::read_to_string(&path).unwrap())
        } else {
            continue;
        };
        modules.entry(name).or_default().push_str(&code);
    }
    let lib = modules.remove("lib").unwrap();
    modules.remove("main");
    let reexports = reexports(&lib);
    modules
        .iter()
        .map(|(name, code)| {
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
            (name.clone(), targets)
        })
        .collect()
}

/// Depth-first from `m`, panicking with the path of the first cycle.
fn visit<'a>(
    krate: &str,
    m: &'a str,
    edges: &'a BTreeMap<String, BTreeSet<String>>,
    path: &mut Vec<&'a str>,
    done: &mut BTreeSet<&'a str>,
) {
    if let Some(i) = path.iter().position(|p| *p == m) {
        panic!("{krate}: import cycle {} -> {m}", path[i..].join(" -> "));
    }
    if !done.insert(m) {
        return;
    }
    path.push(m);
    for t in &edges[m] {
        visit(krate, t, edges, path, done);
    }
    path.pop();
}

fn assert_dag(krate: &str) -> BTreeMap<String, BTreeSet<String>> {
    let edges = module_graph(krate);
    let mut done = BTreeSet::new();
    for m in edges.keys() {
        visit(krate, m, &edges, &mut Vec::new(), &mut done);
    }
    edges
}

#[test]
fn every_crate_s_modules_form_a_dag() {
    for krate in [
        "signalr-protocol",
        "signalr-reconnect",
        "signalr-transport",
        "signalr-client",
        "signalr-testserver",
    ] {
        assert_dag(krate);
    }
}

#[test]
fn the_check_sees_the_imports() {
    // Known edges of each crate that matters most, so a parser that reads nothing fails here.
    let client = module_graph("signalr-client");
    assert!(client["connection"].contains("driver"), "{client:?}");
    assert!(client["driver"].contains("core"), "{client:?}");
    let server = module_graph("signalr-testserver");
    assert!(server["session"].contains("hub"), "{server:?}");
    assert!(server["http"].contains("app"), "{server:?}");
    // The test server's leaves stay leaves: the channel protocol names only the error type,
    // and this instance's registry neither starts sessions nor knows the hub or the
    // backplane.
    assert!(server["wire"].iter().all(|m| m == "error"), "{server:?}");
    assert!(
        server["registry"]
            .iter()
            .all(|m| m == "error" || m == "wire"),
        "{server:?}"
    );
}

#[test]
fn a_cycle_is_found() {
    let edges: BTreeMap<String, BTreeSet<String>> =
        [("a", vec!["b"]), ("b", vec!["c"]), ("c", vec!["a"])]
            .into_iter()
            .map(|(m, t)| (m.to_owned(), t.into_iter().map(str::to_owned).collect()))
            .collect();
    let found = std::panic::catch_unwind(|| {
        visit("test", "a", &edges, &mut Vec::new(), &mut BTreeSet::new());
    });
    assert!(found.is_err());
    assert_eq!(
        crate_paths("use crate::{a::X, b, self}; crate::c::f(); $crate::d; not_crate::e"),
        ["a", "b", "c"].map(str::to_owned).into_iter().collect()
    );
    assert_eq!(
        production_code("use crate::a; // crate::z\n#[cfg(test)]\nmod tests {\n use crate::b;\n}"),
        "use crate::a; \n"
    );
    let lib = "pub use m::{A, b::C as D,\n E};\npub use n::F;";
    assert_eq!(
        reexports(lib),
        [("A", "m"), ("D", "m"), ("E", "m"), ("F", "n")]
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
            .into_iter()
            .collect()
    );
}
