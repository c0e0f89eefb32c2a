//! The documents hold together: every relative link in the project's Markdown (`README.md`,
//! `ARCHITECTURE.md`, `BENCHMARKS.md`, `SECURITY.md`, `docs/`, `clients/`) reaches a file that
//! exists and, when it names a heading (`#…`), a heading of that file, by the anchors GitHub
//! renders. Vendored copies of other projects are left out.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

/// The project's own Markdown files, relative to the repository's root.
fn documents(root: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let entry = entry.unwrap();
            let rel = dir.join(entry.file_name());
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type().unwrap().is_dir() {
                if !matches!(name.as_str(), "node_modules" | "vendor" | "target")
                    && !name.starts_with('.')
                {
                    walk(root, &rel, out);
                }
            } else if name.ends_with(".md") {
                out.push(rel);
            }
        }
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(root).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".md") {
            out.push(PathBuf::from(name));
        }
    }
    for dir in ["docs", "clients"] {
        if root.join(dir).is_dir() {
            walk(root, Path::new(dir), &mut out);
        }
    }
    out.sort();
    out
}

/// The lines of `text` outside fenced code blocks.
fn prose(text: &str) -> impl Iterator<Item = &str> {
    let mut fenced = false;
    text.lines().filter(move |line| {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            return false;
        }
        !fenced
    })
}

/// The anchor GitHub gives a heading: its text as rendered (a link's text, no markup),
/// lower-cased, with every character but letters, digits, `-`, `_` and spaces dropped, and
/// spaces as `-`.
fn slug(heading: &str) -> String {
    let mut text = String::new();
    let mut rest = heading;
    // A link in a heading renders as its text.
    while let Some(open) = rest.find('[') {
        let Some(close) = rest[open..].find("](").map(|c| open + c) else {
            break;
        };
        let Some(end) = rest[close..].find(')').map(|e| close + e) else {
            break;
        };
        text.push_str(&rest[..open]);
        text.push_str(&rest[open + 1..close]);
        rest = &rest[end + 1..];
    }
    text.push_str(rest);
    text.trim()
        .chars()
        .flat_map(char::to_lowercase)
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// Every heading's anchor in `text`, a repeated one with GitHub's `-1`, `-2`… suffixes.
fn anchors(text: &str) -> HashSet<String> {
    let mut seen = std::collections::HashMap::<String, usize>::new();
    let mut out = HashSet::new();
    for line in prose(text) {
        let hashes = line.chars().take_while(|c| *c == '#').count();
        if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let base = slug(&line[hashes..]);
        let n = seen.entry(base.clone()).or_default();
        out.insert(if *n == 0 { base } else { format!("{base}-{n}") });
        *n += 1;
    }
    out
}

/// The targets of the inline links (`[text](target)`) in `text`'s prose.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in prose(text) {
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let end = after
                .find(|c: char| c == ')' || c.is_whitespace())
                .unwrap_or(after.len());
            out.push(after[..end].to_owned());
            rest = &after[end..];
        }
    }
    out
}

/// `path` with its `.` and `..` parts resolved, without touching the file system.
fn normal(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// The broken links of the documents `files` under `root`, each as `file: target (why)`.
fn broken_links(root: &Path, files: &[PathBuf]) -> Vec<String> {
    let mut broken = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        for target in links(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (path, anchor) = target.split_once('#').unwrap_or((&target, ""));
            let reached = if path.is_empty() {
                file.clone()
            } else {
                normal(&file.parent().unwrap_or(Path::new("")).join(path))
            };
            let full = root.join(&reached);
            if !full.exists() {
                broken.push(format!("{}: {target} (no such file)", file.display()));
                continue;
            }
            if anchor.is_empty() || full.extension().is_none_or(|e| e != "md") {
                continue;
            }
            let theirs = std::fs::read_to_string(&full).unwrap();
            if !anchors(&theirs).contains(anchor) {
                broken.push(format!("{}: {target} (no such heading)", file.display()));
            }
        }
    }
    broken
}

fn every_link_in_the_docs_reaches_its_file_and_heading() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let files = documents(root);
    assert!(
        files.iter().any(|f| f == Path::new("docs/architecture.md")),
        "the documents were not found: {files:?}"
    );
    let broken = broken_links(root, &files);
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// The check itself finds a missing file, a missing heading, and passes a heading written
/// with markup, a link and a repeated title.
fn the_link_check_finds_a_broken_link() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("docs")).unwrap();
    std::fs::write(
        dir.path().join("docs/a.md"),
        "# A\n\n## The `user_cache`, [read](b.md) first\n\n## Again\n\n## Again\n\n\
         ```\n[in code](nowhere.md)\n```\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("README.md"),
        "[ok](docs/a.md#the-user_cache-read-first) [ok](docs/a.md#again-1) [ok](#readme)\n\
         [gone](docs/b.md) [wrong](docs/a.md#again-2) [web](https://example.com/x.md)\n\n# Readme\n",
    )
    .unwrap();
    let files = documents(dir.path());
    assert_eq!(
        files,
        [PathBuf::from("README.md"), PathBuf::from("docs/a.md")]
    );
    assert_eq!(
        broken_links(dir.path(), &files),
        [
            "README.md: docs/b.md (no such file)",
            "README.md: docs/a.md#again-2 (no such heading)",
            "docs/a.md: b.md (no such file)",
        ]
    );
}

crate::trials! {
    both: [],
    tests: [],
    sync: [
        every_link_in_the_docs_reaches_its_file_and_heading,
        the_link_check_finds_a_broken_link,
    ],
}
