//! The house is tidy:
//!
//! - **No circles.** Within each crate, the modules' `use crate::…` imports form no cycle,
//!   apart from a module and its own submodules (which Rust ties by nesting), and neither do
//!   its folders (a top-level module and everything below it, macros' paths included). A cycle
//!   fails with the modules or folders that close it.
//! - **No file over 900 lines** in `src/`, `actors/src/`, `benches/` and `tests/`.
//! - **Test-only messages** (`InjectFault`) are compiled with the `testing` feature only.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`, test files left out.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs")
            && path.file_name().is_some_and(|n| n != "tests.rs")
        {
            out.push(path);
        }
    }
}

/// A file's module path (`http::tickets` for `src/http/tickets.rs`; `lib.rs` and `main.rs`
/// are the root, empty).
fn module_of(root: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(root).unwrap().with_extension("");
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts == ["lib"] || parts == ["main"] {
        Vec::new()
    } else {
        parts
    }
}

/// The `crate::…` paths a file's non-test code names (in `use` lines and in code).
fn crate_paths(text: &str) -> Vec<Vec<String>> {
    paths_named(text, false)
}

/// [`crate_paths`], and with `macros` the `$crate::…` paths of its macros too.
fn paths_named(text: &str, macros: bool) -> Vec<Vec<String>> {
    let code = text.split("#[cfg(test)]").next().unwrap_or_default();
    let mut paths = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        // Skip `$crate::` (macro paths) and comments.
        let line_start = code[..at].rfind('\n').map_or(0, |i| i + 1);
        let line = code[line_start..at].trim_start();
        if line.starts_with("//") || (!macros && code[..at].ends_with('$')) {
            continue;
        }
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a::b, c::{d, e}}`: each item's leading path.
            let mut depth = 0;
            let end = group
                .char_indices()
                .find(|&(_, c)| {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => return true,
                        '}' => depth -= 1,
                        _ => {}
                    }
                    false
                })
                .map_or(group.len(), |(i, _)| i);
            let mut depth = 0;
            let mut item = String::new();
            for c in group[..end].chars().chain([',']) {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        let path = leading_path(item.trim());
                        if !path.is_empty() {
                            paths.push(path);
                        }
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
            continue;
        }
        let path = leading_path(rest);
        if !path.is_empty() {
            paths.push(path);
        }
    }
    paths
}

/// The identifiers a path starts with: `a::b` of `a::b::{c, d}` or of `a::b(x)`.
fn leading_path(text: &str) -> Vec<String> {
    let mut path = Vec::new();
    for seg in text.split("::") {
        let ident: String = seg
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let whole = ident.len() == seg.len();
        if !ident.is_empty() {
            path.push(ident);
        }
        // The path ends where a segment holds more than a name (`;`, `(`, a space, a brace).
        if !whole || seg.is_empty() {
            break;
        }
    }
    path
}

/// The import graph of one crate's modules, edges between a module and its ancestors or
/// descendants left out.
fn graph(root: &Path) -> Graph {
    let mut files = Vec::new();
    sources(root, &mut files);
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(root, f)).collect();
    let mut edges: Graph = BTreeMap::new();
    for file in &files {
        let from = module_of(root, file);
        let text = std::fs::read_to_string(file).unwrap();
        for path in crate_paths(&text) {
            // The longest prefix of the path that is a module of this crate.
            let Some(to) = (1..=path.len())
                .rev()
                .map(|n| path[..n].to_vec())
                .find(|p| modules.contains(p))
            else {
                continue;
            };
            let nested = to.starts_with(&from) || from.starts_with(&to);
            if !nested {
                edges.entry(from.clone()).or_default().insert(to);
            }
        }
        edges.entry(from).or_default();
    }
    edges
}

/// Modules (paths of names) and the modules each imports.
type Graph = BTreeMap<Vec<String>, BTreeSet<Vec<String>>>;

/// A cycle of the graph, if it has one.
fn cycle(edges: &Graph) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        node: &Vec<String>,
        edges: &Graph,
        marks: &mut BTreeMap<Vec<String>, Mark>,
        stack: &mut Vec<Vec<String>>,
    ) -> Option<Vec<String>> {
        match marks.get(node) {
            Some(Mark::Done) => return None,
            Some(Mark::Open) => {
                let start = stack.iter().position(|n| n == node).unwrap();
                let mut names: Vec<String> = stack[start..].iter().map(|n| n.join("::")).collect();
                names.push(node.join("::"));
                return Some(names);
            }
            None => {}
        }
        marks.insert(node.clone(), Mark::Open);
        stack.push(node.clone());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(found) = visit(next, edges, marks, stack) {
                return Some(found);
            }
        }
        stack.pop();
        marks.insert(node.clone(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in edges.keys() {
        if let Some(found) = visit(node, edges, &mut marks, &mut Vec::new()) {
            return Some(found);
        }
    }
    None
}

/// Fails naming the circle when a crate's graph (made by `graph_of`) has one.
fn no_circle_in_each_crate(what: &str, least: usize, graph_of: fn(&Path) -> Graph) {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"));
    for krate in ["actors/src", "src"] {
        let edges = graph_of(&workspace.join(krate));
        assert!(
            edges.len() > least,
            "{krate}: only {} {what} read",
            edges.len()
        );
        if let Some(found) = cycle(&edges) {
            panic!(
                "{krate}: these {what} import each other in a circle: {}",
                found.join(" -> ")
            );
        }
    }
}

fn the_modules_of_each_crate_import_each_other_in_no_circle() {
    no_circle_in_each_crate("modules", 20, graph);
}

/// The import graph of one crate's folders: each top-level module with its submodules (a
/// folder and the file beside it, `http.rs` and `http/`), macros' paths included.
fn folder_graph(root: &Path) -> Graph {
    let mut files = Vec::new();
    sources(root, &mut files);
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(root, f)).collect();
    let mut edges: Graph = BTreeMap::new();
    for file in &files {
        let from = module_of(root, file);
        let Some(from_top) = from.first().cloned() else {
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        for path in paths_named(&text, true) {
            let is_module = (1..=path.len()).any(|n| modules.contains(&path[..n]));
            match path.first() {
                Some(top) if is_module && *top != from_top => {
                    edges
                        .entry(vec![from_top.clone()])
                        .or_default()
                        .insert(vec![top.clone()]);
                }
                _ => {}
            }
        }
        edges.entry(vec![from_top]).or_default();
    }
    edges
}

fn the_folders_of_each_crate_import_each_other_in_no_circle() {
    no_circle_in_each_crate("folders", 10, folder_graph);
}

/// The longest a source file may grow: past it, it is two files.
const MOST_LINES: usize = 900;

fn no_source_file_is_over_900_lines() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut over = Vec::new();
    for dir in ["src", "actors/src", "benches", "tests"] {
        let mut files = Vec::new();
        every_rs(&workspace.join(dir), &mut files);
        for file in files {
            let lines = std::fs::read_to_string(&file).unwrap().lines().count();
            if lines > MOST_LINES {
                over.push(format!(
                    "{} ({lines})",
                    file.strip_prefix(workspace).unwrap().display()
                ));
            }
        }
    }
    assert!(
        over.is_empty(),
        "these files are over {MOST_LINES} lines: {}",
        over.join(", ")
    );
}

/// Every `.rs` file under `dir`, tests included.
fn every_rs(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            every_rs(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Messages that exist only for tests (`InjectFault`, `InjectSendPanic`) are compiled only
/// with the `testing` feature: a release build cannot receive them.
fn test_only_messages_are_behind_the_testing_feature() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    every_rs(&workspace.join("actors/src"), &mut files);
    let mut bare = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") || !code.contains("Inject") {
                continue;
            }
            // The line carries the gate (a variant, a match arm), or the top-level item it
            // belongs to does (an `impl` of test helpers, a test module).
            let gate = |l: &&str| {
                l.contains("cfg(feature = \"testing\")")
                    || l.trim_start().starts_with("#[cfg(test)]")
            };
            let own = lines[..i].iter().rev().take(3).any(gate);
            let item = lines[..i]
                .iter()
                .rposition(|l| {
                    !l.is_empty()
                        && !l.starts_with(char::is_whitespace)
                        && !l.starts_with("//")
                        && !l.starts_with("#[")
                        && !l.starts_with('}')
                })
                .is_some_and(|at| lines[..at].iter().rev().take(2).any(gate));
            let gated = own || item;
            if !gated {
                bare.push(format!(
                    "{}:{}",
                    file.strip_prefix(workspace).unwrap().display(),
                    i + 1
                ));
            }
        }
    }
    assert!(
        bare.is_empty(),
        "test-only messages outside the `testing` feature: {}",
        bare.join(", ")
    );
}

fn the_circle_check_finds_a_circle() {
    let m = |s: &str| s.split("::").map(str::to_owned).collect::<Vec<_>>();
    let mut edges: Graph = BTreeMap::new();
    edges.entry(m("a")).or_default().insert(m("b"));
    edges.entry(m("b")).or_default().insert(m("c"));
    edges.entry(m("c")).or_default();
    assert_eq!(cycle(&edges), None);
    edges.entry(m("c")).or_default().insert(m("a"));
    assert_eq!(cycle(&edges).map(|c| c.len()), Some(4));
    assert_eq!(
        crate_paths("use crate::http::error::ApiError;\n// crate::x::y\n$crate::store::z"),
        vec![m("http::error::ApiError")]
    );
    assert_eq!(
        crate_paths("use crate::{auth::{Auth, TokenType}, state::AppState};"),
        vec![m("auth"), m("state::AppState")]
    );
}

crate::trials! {
    both: [],
    tests: [],
    sync: [
        the_modules_of_each_crate_import_each_other_in_no_circle,
        the_folders_of_each_crate_import_each_other_in_no_circle,
        no_source_file_is_over_900_lines,
        test_only_messages_are_behind_the_testing_feature,
        the_circle_check_finds_a_circle,
    ],
}
