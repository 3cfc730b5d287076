//! One idea, so one file over 800 lines: the check (lexer, path resolver,
//! rules) and the tests that pin each rule.
//!
//! The layering check: reads `src/**/*.rs`, finds every `crate::…` and
//! `super::…` path (in `use` trees and inline, `super::` resolved against
//! the file's module and the inline modules around it), and fails when a
//! top-level module refers to one that comes later in [`crate::LAYERS`]
//! (save for [`crate::ALLOWED_BACKWARD`]), or when modules refer to each
//! other in a circle: top-level modules, or sibling submodules
//! (`decode::lorawan` ↔ `decode::native`). Test-only code (`#[cfg(test)]`
//! modules and items, and the file of a `#[cfg(test)] mod tests;`) is not
//! held to the order: a unit test may drive a
//! stage with later ones, and the compiled library does not depend on it.
//!
//! A test-only module: it reads the source, not the compiled crate. The
//! lexer knows just enough Rust (comments, strings, raw strings, chars
//! versus lifetimes) for braces and paths to be read right.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

/// One module path reference found in the source.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reference {
    /// File it is in, relative to the crate (`src/store/mod.rs`).
    file: String,
    line: usize,
    /// The module the reference is written in (`["store", "tests"]`).
    from: Vec<String>,
    /// The absolute path it names, from the crate root.
    to: Vec<String>,
    /// In test-only code (a `#[cfg(test)]` module or item).
    test: bool,
}

/// A rule the source breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Violation {
    /// `from` refers to `to`, which comes later in the order.
    Backward {
        file: String,
        line: usize,
        from: String,
        to: String,
    },
    /// A top-level module not in the order (or in it twice).
    Unplaced { module: String, why: String },
    /// An allow-list entry that no reference needs any more.
    StaleAllowance { from: String, to: String },
    /// Modules that refer to each other in a circle, with one reference
    /// (file:line) for each step.
    Circle {
        modules: Vec<String>,
        at: Vec<String>,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::Backward {
                file,
                line,
                from,
                to,
            } => write!(
                f,
                "{file}:{line}: `{from}` refers to `{to}`, a later stage: a module may \
                 refer only to modules before it in crate::LAYERS (or beside it in its layer)"
            ),
            Violation::Unplaced { module, why } => {
                write!(f, "module `{module}` {why}: place it once in crate::LAYERS")
            }
            Violation::StaleAllowance { from, to } => write!(
                f,
                "crate::ALLOWED_BACKWARD allows `{from}` → `{to}`, which nothing refers to \
                 any more: remove the entry (the list may only shrink)"
            ),
            Violation::Circle { modules, at } => write!(
                f,
                "modules in an import circle: {} → {} ({})",
                modules.join(" → "),
                modules[0],
                at.join(", ")
            ),
        }
    }
}

/// The whole check over a source tree: `files` are (path relative to the
/// crate, content) pairs of every `.rs` file under `src/`.
pub(crate) fn check(
    files: &[(String, String)],
    layers: &[&[&str]],
    allowed: &[(&str, &str, &str)],
) -> Vec<Violation> {
    let mut refs = Vec::new();
    let mut test_files: Vec<Vec<String>> = Vec::new();
    let mut modules: BTreeSet<Vec<String>> = BTreeSet::new();
    for (file, text) in files {
        let Some(module) = module_of(file) else {
            continue;
        };
        let mut found = scan(file, &module, text);
        for m in &found.modules {
            modules.insert(m.clone());
        }
        modules.insert(module);
        refs.append(&mut found.refs);
        test_files.append(&mut found.test_files);
    }
    // A file whose module is declared test-only (`#[cfg(test)] mod tests;`
    // in its parent), or is inside such a module, is test-only code.
    for r in &mut refs {
        if test_files.iter().any(|t| r.from.starts_with(t)) {
            r.test = true;
        }
    }
    let mut out = Vec::new();

    // Every top-level module is placed exactly once.
    let mut rank: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, layer) in layers.iter().enumerate() {
        for m in *layer {
            if rank.insert(m, i).is_some() {
                out.push(Violation::Unplaced {
                    module: m.to_string(),
                    why: "is in the order twice".into(),
                });
            }
        }
    }
    let top: BTreeSet<&str> = modules.iter().map(|m| m[0].as_str()).collect();
    for m in &top {
        if !rank.contains_key(m) {
            out.push(Violation::Unplaced {
                module: m.to_string(),
                why: "is not in the order".into(),
            });
        }
    }
    for m in rank.keys() {
        if !top.contains(m) {
            out.push(Violation::Unplaced {
                module: m.to_string(),
                why: "is in the order but not in src/".into(),
            });
        }
    }

    // No reference to a later stage, save the allowed ones.
    let is_allowed = |from: &str, to: &str| allowed.iter().any(|(f, t, _)| *f == from && *t == to);
    let mut used_allowances = BTreeSet::new();
    let mut reported = BTreeSet::new();
    for r in refs.iter().filter(|r| !r.test) {
        let (from, to) = (r.from[0].as_str(), r.to[0].as_str());
        if from == to || !top.contains(to) {
            continue;
        }
        let (Some(&rf), Some(&rt)) = (rank.get(from), rank.get(to)) else {
            continue;
        };
        if rt > rf {
            if is_allowed(from, to) {
                used_allowances.insert((from.to_string(), to.to_string()));
            } else if reported.insert((r.file.clone(), r.line, to)) {
                out.push(Violation::Backward {
                    file: r.file.clone(),
                    line: r.line,
                    from: from.into(),
                    to: to.into(),
                });
            }
        }
    }
    for (from, to, _) in allowed {
        if !used_allowances.contains(&(from.to_string(), to.to_string())) {
            out.push(Violation::StaleAllowance {
                from: from.to_string(),
                to: to.to_string(),
            });
        }
    }

    // No circles among siblings (top-level modules are siblings under the
    // crate root). A reference to an ancestor or a descendant is not an
    // edge: a parent declares its children, and they use its items.
    let mut edges: BTreeMap<Vec<String>, BTreeMap<Vec<String>, String>> = BTreeMap::new();
    for r in refs.iter().filter(|r| !r.test) {
        let common = r.from.iter().zip(&r.to).take_while(|(a, b)| a == b).count();
        if common >= r.from.len() || common >= r.to.len() {
            continue;
        }
        let a = r.from[..=common].to_vec();
        let b = r.to[..=common].to_vec();
        if !modules.contains(&b) {
            continue; // an item of the common parent, not a sibling module
        }
        if common == 0 && is_allowed(&a[0], &b[0]) {
            continue; // known, and on its way out: reported by the list
        }
        edges
            .entry(a)
            .or_default()
            .entry(b)
            .or_insert_with(|| format!("{}:{}", r.file, r.line));
    }
    out.extend(circles(&edges));
    out
}

/// The circles of a directed graph, each reported once (its strongly
/// connected components of more than one module, with one circle through
/// each).
fn circles(edges: &BTreeMap<Vec<String>, BTreeMap<Vec<String>, String>>) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut done: BTreeSet<Vec<String>> = BTreeSet::new();
    for start in edges.keys() {
        if done.contains(start) {
            continue;
        }
        // A shortest path back to `start` (breadth first), if any.
        let mut prev: BTreeMap<&Vec<String>, &Vec<String>> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([start]);
        let mut back = None;
        while let Some(m) = queue.pop_front() {
            for next in edges.get(m).map(|e| e.keys()).into_iter().flatten() {
                if next == start {
                    back = Some(m);
                    break;
                }
                if !prev.contains_key(next) && !done.contains(next) {
                    prev.insert(next, m);
                    queue.push_back(next);
                }
            }
            if back.is_some() {
                break;
            }
        }
        if let Some(mut m) = back {
            let mut path = vec![m];
            while m != start {
                m = prev[m];
                path.push(m);
            }
            path.reverse();
            let at = path
                .iter()
                .zip(path.iter().skip(1).chain([&start]))
                .map(|(a, b)| edges[*a][*b].clone())
                .collect();
            for p in &path {
                done.insert((*p).clone());
            }
            out.push(Violation::Circle {
                modules: path.iter().map(|p| p.join("::")).collect(),
                at,
            });
        }
        done.insert(start.clone());
    }
    out
}

/// The module a file defines: `src/a/b.rs` and `src/a/b/mod.rs` → `a::b`;
/// `None` for the crate root and the binary (`lib.rs`, `main.rs`), and for
/// what is not Rust.
fn module_of(file: &str) -> Option<Vec<String>> {
    let rel = file.strip_prefix("src/")?.strip_suffix(".rs")?;
    let mut parts: Vec<String> = rel.split('/').map(str::to_string).collect();
    if parts.len() == 1 && (parts[0] == "lib" || parts[0] == "main") {
        return None;
    }
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    Some(parts)
}

/// What one file holds: its inline modules and its references.
struct Scanned {
    modules: Vec<Vec<String>>,
    refs: Vec<Reference>,
    /// Modules it declares test-only whose code is in a file of its own
    /// (`#[cfg(test)] mod tests;`).
    test_files: Vec<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    /// `::`
    Path,
    Open,
    Close,
    Comma,
    Star,
    Semi,
    Other,
}

/// Rust source → tokens with their line, without comments and literals.
fn lex(text: &str) -> Vec<(Tok, usize)> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    let newlines = |s: &[u8]| s.iter().filter(|&&c| c == b'\n').count();
    while i < b.len() {
        let c = b[i];
        match c {
            b'\n' => {
                line += 1;
                i += 1;
            }
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let (mut depth, start) = (1, i);
                i += 2;
                while i < b.len() && depth > 0 {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                    } else {
                        i += 1;
                    }
                }
                line += newlines(&b[start..i]);
            }
            b'"' => {
                let start = i;
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                line += newlines(&b[start..i.min(b.len())]);
                out.push((Tok::Other, line));
            }
            b'r' | b'b'
                if {
                    // r"…", r#"…"#, br"…", b"…"
                    let mut j = i + 1;
                    if c == b'b' && b.get(j) == Some(&b'r') {
                        j += 1;
                    }
                    while b.get(j) == Some(&b'#') {
                        j += 1;
                    }
                    b.get(j) == Some(&b'"') && (i == 0 || !is_ident(b[i - 1]))
                } =>
            {
                let start = i;
                let mut j = i + 1;
                let raw = c == b'r' || b.get(j) == Some(&b'r');
                if c == b'b' && b.get(j) == Some(&b'r') {
                    j += 1;
                }
                let mut hashes = 0;
                while b[j] == b'#' {
                    hashes += 1;
                    j += 1;
                }
                j += 1; // the quote
                if raw {
                    loop {
                        if j >= b.len() {
                            break;
                        }
                        if b[j] == b'"'
                            && b[j + 1..]
                                .iter()
                                .take(hashes)
                                .filter(|&&h| h == b'#')
                                .count()
                                == hashes
                        {
                            j += 1 + hashes;
                            break;
                        }
                        j += 1;
                    }
                } else {
                    while j < b.len() && b[j] != b'"' {
                        j += if b[j] == b'\\' { 2 } else { 1 };
                    }
                    j += 1;
                }
                i = j.min(b.len());
                line += newlines(&b[start..i]);
                out.push((Tok::Other, line));
            }
            b'\'' => {
                // A char literal ('x', '\n', '\u{1F}') or a lifetime ('a).
                if b.get(i + 1) == Some(&b'\\') {
                    let mut j = i + 2;
                    while j < b.len() && b[j] != b'\'' {
                        j += 1;
                    }
                    i = j + 1;
                } else if let Some(len) = text[i + 1..]
                    .chars()
                    .next()
                    .map(char::len_utf8)
                    .filter(|&len| b.get(i + 1 + len) == Some(&b'\''))
                {
                    i += len + 2;
                } else {
                    i += 1; // a lifetime: its name lexes as an ident
                }
                out.push((Tok::Other, line));
            }
            b':' if b.get(i + 1) == Some(&b':') => {
                out.push((Tok::Path, line));
                i += 2;
            }
            b'{' => {
                out.push((Tok::Open, line));
                i += 1;
            }
            b'}' => {
                out.push((Tok::Close, line));
                i += 1;
            }
            b',' => {
                out.push((Tok::Comma, line));
                i += 1;
            }
            b'*' => {
                out.push((Tok::Star, line));
                i += 1;
            }
            b';' => {
                out.push((Tok::Semi, line));
                i += 1;
            }
            c if is_ident(c) => {
                let start = i;
                while i < b.len() && is_ident(b[i]) {
                    i += 1;
                }
                let word = &text[start..i];
                let word = word.strip_prefix("r#").unwrap_or(word);
                out.push((Tok::Ident(word.to_string()), line));
            }
            c if c.is_ascii_whitespace() => i += 1,
            _ => {
                out.push((Tok::Other, line));
                // Skip a whole UTF-8 character.
                i += 1;
                while i < b.len() && (b[i] & 0xC0) == 0x80 {
                    i += 1;
                }
            }
        }
    }
    out
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Finds the inline modules and the references of one file whose module
/// is `module`.
fn scan(file: &str, module: &[String], text: &str) -> Scanned {
    let toks = lex(text);
    let mut out = Scanned {
        modules: Vec::new(),
        refs: Vec::new(),
        test_files: Vec::new(),
    };
    // The inline modules open around the cursor, with the brace depth at
    // which each closes and whether it is test-only.
    let mut stack: Vec<(String, usize, bool)> = Vec::new();
    let mut depth = 0usize;
    let here = |stack: &[(String, usize, bool)]| {
        let mut m = module.to_vec();
        m.extend(stack.iter().map(|(n, _, _)| n.clone()));
        m
    };
    let in_test = |stack: &[(String, usize, bool)]| stack.iter().any(|(_, _, t)| *t);
    // A `#[cfg(test)]` seen, for the item that follows.
    let mut cfg_test = false;
    let mut i = 0;
    while i < toks.len() {
        match &toks[i].0 {
            Tok::Ident(w)
                if w == "cfg"
                    && toks.get(i + 2).map(|t| &t.0) == Some(&Tok::Ident("test".into()))
                    && toks.get(i + 3).map(|t| &t.0) == Some(&Tok::Other) =>
            {
                cfg_test = true;
                i += 4;
                continue;
            }
            Tok::Semi => cfg_test = false,
            Tok::Open => {
                depth += 1;
                cfg_test = false;
            }
            Tok::Close => {
                depth = depth.saturating_sub(1);
                if stack.last().is_some_and(|(_, d, _)| *d == depth) {
                    stack.pop();
                }
            }
            Tok::Ident(w) if w == "mod" => {
                if let (Some((Tok::Ident(name), _)), Some((Tok::Open, _))) =
                    (toks.get(i + 1), toks.get(i + 2))
                {
                    stack.push((name.clone(), depth, cfg_test));
                    out.modules.push(here(&stack));
                    cfg_test = false;
                    depth += 1;
                    i += 3;
                    continue;
                }
                if let (Some((Tok::Ident(name), _)), Some((Tok::Semi, _))) =
                    (toks.get(i + 1), toks.get(i + 2))
                {
                    if cfg_test || in_test(&stack) {
                        let mut m = here(&stack);
                        m.push(name.clone());
                        out.test_files.push(m);
                    }
                }
            }
            Tok::Ident(w) if w == "use" => {
                let from = here(&stack);
                let test = cfg_test || in_test(&stack);
                let mut j = i + 1;
                let mut paths = Vec::new();
                use_tree(&toks, &mut j, Vec::new(), &mut paths);
                for (path, line) in paths {
                    if let Some(to) = resolve(&from, &path) {
                        out.refs.push(Reference {
                            file: file.into(),
                            line,
                            from: from.clone(),
                            to,
                            test,
                        });
                    }
                }
                i = j;
                continue;
            }
            Tok::Ident(w)
                if (w == "crate" || w == "super")
                    && toks.get(i + 1).map(|t| &t.0) == Some(&Tok::Path) =>
            {
                // An inline path, unless it continues one (`a::crate` is not Rust).
                let continues = i > 0 && toks[i - 1].0 == Tok::Path;
                let line = toks[i].1;
                let mut path = vec![w.clone()];
                let mut j = i + 1;
                while toks.get(j).map(|t| &t.0) == Some(&Tok::Path) {
                    match toks.get(j + 1) {
                        Some((Tok::Ident(s), _)) => {
                            path.push(s.clone());
                            j += 2;
                        }
                        _ => break,
                    }
                }
                if !continues {
                    let from = here(&stack);
                    if let Some(to) = resolve(&from, &path) {
                        out.refs.push(Reference {
                            file: file.into(),
                            line,
                            from,
                            to,
                            test: in_test(&stack),
                        });
                    }
                }
                i = j;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// Reads a use tree from `toks[*j]` on (after `use`), appending each leaf
/// path with `prefix` before it and its line.
fn use_tree(
    toks: &[(Tok, usize)],
    j: &mut usize,
    prefix: Vec<String>,
    out: &mut Vec<(Vec<String>, usize)>,
) {
    let mut path = prefix;
    let line = toks.get(*j).map_or(0, |t| t.1);
    loop {
        match toks.get(*j).map(|t| &t.0) {
            Some(Tok::Ident(s)) if s == "as" => {
                *j += 2; // `as name`
            }
            Some(Tok::Ident(s)) => {
                path.push(s.clone());
                *j += 1;
            }
            Some(Tok::Path) => *j += 1,
            Some(Tok::Star) => *j += 1,
            Some(Tok::Open) => {
                *j += 1;
                loop {
                    match toks.get(*j).map(|t| &t.0) {
                        Some(Tok::Close) => {
                            *j += 1;
                            break;
                        }
                        Some(Tok::Comma) => *j += 1,
                        None => return,
                        _ => use_tree(toks, j, path.clone(), out),
                    }
                }
                return;
            }
            _ => {
                // `,` `}` `;` end this leaf; the caller takes them.
                if path.last().is_some_and(|s| s == "self") {
                    path.pop();
                }
                out.push((path, line));
                return;
            }
        }
    }
}

/// A path as written in module `from` → the absolute path it names, for
/// paths that start at `crate` or `super` (others name outside crates, or
/// what is in scope, which the `use` lines already gave).
fn resolve(from: &[String], path: &[String]) -> Option<Vec<String>> {
    let mut at: Vec<String> = match path.first()?.as_str() {
        "crate" => Vec::new(),
        "super" => from.to_vec(),
        "self" => from.to_vec(),
        _ => return None,
    };
    let mut rest = match path[0].as_str() {
        "crate" | "self" => &path[1..],
        _ => path,
    };
    while rest.first().is_some_and(|s| s == "super") {
        at.pop()?;
        rest = &rest[1..];
    }
    at.extend(rest.iter().filter(|s| *s != "self").cloned());
    (!at.is_empty()).then_some(at)
}

/// Every `.rs` file under `root/src`, as (path relative to `root`, text).
pub(crate) fn read_sources(root: &Path) -> Vec<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|e| e == "rs") {
                out.push(p);
            }
        }
    }
    let mut paths = Vec::new();
    walk(&root.join("src"), &mut paths);
    paths
        .into_iter()
        .map(|p| {
            let text =
                std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            (rel, text)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(files: &[(&str, &str)]) -> Vec<(String, String)> {
        files
            .iter()
            .map(|(p, t)| (p.to_string(), t.to_string()))
            .collect()
    }

    #[test]
    fn the_crate_keeps_its_layers() {
        let files = read_sources(Path::new(env!("CARGO_MANIFEST_DIR")));
        assert!(files.len() > 50, "read only {} files", files.len());
        // The scanner sees the crate's references (not none, which would
        // pass any order).
        let refs: usize = files
            .iter()
            .filter_map(|(f, t)| Some(scan(f, &module_of(f)?, t).refs.len()))
            .sum();
        assert!(refs > 500, "found only {refs} references");
        let found = check(&files, crate::LAYERS, crate::ALLOWED_BACKWARD);
        let report: Vec<String> = found.iter().map(|v| v.to_string()).collect();
        assert!(
            report.is_empty(),
            "the layering is broken:\n{}",
            report.join("\n")
        );
    }

    const LAYERS: &[&[&str]] = &[&["time"], &["journal"], &["store"], &["api"]];

    #[test]
    fn a_planted_backward_import_fails_with_its_file_and_line() {
        let files = src(&[
            ("src/time.rs", "pub fn now() {}\n"),
            ("src/journal.rs", "use crate::time::now;\n"),
            ("src/store/mod.rs", "//! x\nuse crate::{journal, time::now};\n\nmod ledger;\n"),
            (
                "src/store/ledger.rs",
                "fn f() {\n    let s = \"crate::api::x\"; // crate::api::y\n    super::super::api::serve();\n}\n",
            ),
            ("src/api.rs", "use crate::store;\n"),
        ]);
        let found = check(&files, LAYERS, &[]);
        let backward: Vec<String> = found.iter().map(|v| v.to_string()).collect();
        assert_eq!(found.len(), 2, "{backward:#?}");
        assert!(
            matches!(&found[0], Violation::Backward { file, line: 3, from, to }
                if file == "src/store/ledger.rs" && from == "store" && to == "api"),
            "{backward:#?}"
        );
        assert!(backward[0].starts_with("src/store/ledger.rs:3: `store` refers to `api`"));
        // store → api → store is also a circle.
        assert!(
            matches!(&found[1], Violation::Circle { modules, .. } if modules == &["api", "store"]),
            "{backward:#?}"
        );
        // The same tree with the planted import removed is clean.
        let mut clean = files.clone();
        clean[3].1 = "fn f() {}\n".into();
        assert_eq!(check(&clean, LAYERS, &[]), vec![]);
    }

    #[test]
    fn an_allowed_backward_import_passes_until_it_is_gone() {
        let files = src(&[
            ("src/time.rs", ""),
            ("src/journal.rs", ""),
            ("src/store.rs", "fn f() { crate::api::x(); }\n"),
            ("src/api.rs", ""),
        ]);
        let allowed = [("store", "api", "on its way out")];
        assert_eq!(check(&files, LAYERS, &allowed), vec![]);
        let mut fixed = files.clone();
        fixed[2].1 = String::new();
        assert_eq!(
            check(&fixed, LAYERS, &allowed),
            vec![Violation::StaleAllowance {
                from: "store".into(),
                to: "api".into()
            }]
        );
    }

    #[test]
    fn siblings_that_import_each_other_are_a_circle() {
        let files = src(&[
            ("src/time.rs", ""),
            ("src/journal.rs", ""),
            ("src/store/mod.rs", "mod a;\nmod b;\nfn shared() {}\n"),
            (
                "src/store/a.rs",
                "use super::{b::g, shared};\npub fn f() {}\n",
            ),
            (
                "src/store/b.rs",
                "pub fn g() {\n    let _ = [0u8; 2];\n    super::super::store::a::f();\n}\n",
            ),
            ("src/api.rs", "use crate::store::a;\n"),
        ]);
        let found = check(&files, LAYERS, &[]);
        assert_eq!(
            found,
            vec![Violation::Circle {
                modules: vec!["store::a".into(), "store::b".into()],
                at: vec!["src/store/a.rs:1".into(), "src/store/b.rs:3".into()],
            }]
        );
    }

    #[test]
    fn test_only_code_may_use_any_stage() {
        // A unit test may drive a stage with later ones (the store's tests
        // run the audit); the compiled library does not depend on them.
        let files = src(&[
            ("src/time.rs", ""),
            ("src/journal.rs", "use crate::time;\n"),
            (
                "src/store.rs",
                "fn f() {}\n\n#[cfg(test)]\npub(crate) mod tests {\n    use crate::api;\n    \
                 mod deeper {\n        fn t() { crate::api::x(); }\n    }\n}\n",
            ),
            ("src/api.rs", "use crate::store;\n"),
        ]);
        assert_eq!(check(&files, LAYERS, &[]), vec![]);
        // The same line outside the test module is reported.
        let mut planted = files.clone();
        planted[2].1.push_str("fn g() { crate::api::x(); }\n");
        let found = check(&planted, LAYERS, &[]);
        assert!(
            matches!(&found[0], Violation::Backward { line: 10, .. }),
            "{found:?}"
        );
    }

    #[test]
    fn a_test_module_in_a_file_of_its_own_may_use_any_stage() {
        // `#[cfg(test)] mod tests;` puts the tests in `store/tests.rs`: that
        // file is test-only code too, and so is a module inside it.
        let files = src(&[
            ("src/time.rs", ""),
            ("src/journal.rs", "use crate::time;\n"),
            (
                "src/store/mod.rs",
                "fn f() {}\n\n#[cfg(test)]\nmod tests;\nmod plain;\n",
            ),
            (
                "src/store/tests.rs",
                "use crate::api;\nmod deeper {\n    fn t() { crate::api::x(); }\n}\n",
            ),
            ("src/store/plain.rs", ""),
            ("src/api.rs", "use crate::store;\n"),
        ]);
        assert_eq!(check(&files, LAYERS, &[]), vec![]);
        // A module declared without `#[cfg(test)]` is held to the order.
        let mut planted = files.clone();
        planted[4].1.push_str("use crate::api;\n");
        let found = check(&planted, LAYERS, &[]);
        assert!(
            matches!(&found[0], Violation::Backward { line: 1, .. }),
            "{found:?}"
        );
    }

    #[test]
    fn every_module_is_placed_once() {
        let files = src(&[("src/time.rs", ""), ("src/extra.rs", "")]);
        let found: Vec<String> = check(&files, &[&["time"], &["time"]], &[])
            .iter()
            .map(|v| v.to_string())
            .collect();
        assert_eq!(
            found,
            [
                "module `time` is in the order twice: place it once in crate::LAYERS",
                "module `extra` is not in the order: place it once in crate::LAYERS",
            ]
        );
    }

    #[test]
    fn the_lexer_skips_comments_strings_and_chars() {
        let toks = lex("a /* { */ \"}\\\"\" r#\"{\"# '{' 'a b\n// {\nc::d");
        let words: Vec<_> = toks
            .iter()
            .filter_map(|(t, l)| match t {
                Tok::Ident(w) => Some((w.as_str(), *l)),
                Tok::Open | Tok::Close => Some(("brace", *l)),
                _ => None,
            })
            .collect();
        assert_eq!(words, [("a", 1), ("a", 1), ("b", 1), ("c", 3), ("d", 3)]);
    }
}
