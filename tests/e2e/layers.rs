//! The house has no circles: within each crate, the modules' `use crate::…` imports form no
//! cycle, apart from a module and its own submodules (which Rust ties by nesting). A cycle
//! fails this test with the modules that close it.

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
    let code = text.split("#[cfg(test)]").next().unwrap_or_default();
    let mut paths = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        // Skip `$crate::` (macro paths) and comments.
        let line_start = code[..at].rfind('\n').map_or(0, |i| i + 1);
        let line = code[line_start..at].trim_start();
        if line.starts_with("//") || code[..at].ends_with('$') {
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
fn graph(root: &Path) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let mut files = Vec::new();
    sources(root, &mut files);
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(root, f)).collect();
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
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

/// A cycle of the graph, if it has one.
fn cycle(edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        node: &Vec<String>,
        edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
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

fn the_modules_of_each_crate_import_each_other_in_no_circle() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"));
    for krate in ["actors/src", "src"] {
        let edges = graph(&workspace.join(krate));
        assert!(
            edges.len() > 20,
            "{krate}: only {} modules read",
            edges.len()
        );
        if let Some(found) = cycle(&edges) {
            panic!(
                "{krate}: these modules import each other in a circle: {}",
                found.join(" -> ")
            );
        }
    }
}

fn the_circle_check_finds_a_circle() {
    let m = |s: &str| s.split("::").map(str::to_owned).collect::<Vec<_>>();
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
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
        the_circle_check_finds_a_circle,
    ],
}
