//! The engine's architecture invariants (ARCHITECTURE.md, "Layers inside the engine"), checked
//! on the source: every file under `engine/src` belongs to a layer, and imports only its own
//! layer and those below it — `core` ← `exec` ← `driver` ← `cluster` ← the top files (`lib.rs`,
//! `master.rs`, `testing.rs`); `core` uses neither tokio, tonic, prost nor the proto crate; and
//! no file imports a re-export of `lib.rs` (`crate::Context`) instead of its module path.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const LAYERS: [&str; 4] = ["core", "exec", "driver", "cluster"];
const TOP_FILES: [&str; 3] = ["lib.rs", "master.rs", "testing.rs"];
/// Items of the crate root that are not re-exports: the layers, the top files' modules, the
/// registration macros (`#[macro_export]` puts them there) and what they expand to.
const ROOT_MODULES: [&str; 9] = [
    "core",
    "exec",
    "driver",
    "cluster",
    "master",
    "testing",
    "__private",
    "register_op",
    "register_key",
];
const NOT_IN_CORE: [&str; 4] = ["tokio", "tonic", "prost", "discnn_proto"];

/// A layer's rank: 0 for `core` up to 4 for the top files.
fn rank(first: &str) -> usize {
    LAYERS
        .iter()
        .position(|l| *l == first)
        .unwrap_or(LAYERS.len())
}

/// The module path of a file under `src` (`exec/op/mod.rs` → `exec::op`).
fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let file = parts.pop().unwrap_or_default();
    let stem = file.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_string());
    }
    parts
}

/// The source with comments, string and char literals blanked out (kept the same length, so
/// that nothing in a doc comment or a message counts as an import).
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let rest = &src[i..];
        if rest.starts_with("//") {
            let end = rest.find('\n').unwrap_or(rest.len());
            out.push_str(&" ".repeat(end));
            i += end;
        } else if rest.starts_with("/*") {
            let end = rest.find("*/").map(|e| e + 2).unwrap_or(rest.len());
            out.extend(
                rest[..end]
                    .chars()
                    .map(|c| if c == '\n' { '\n' } else { ' ' }),
            );
            i += end;
        } else if rest.starts_with("r#\"") || rest.starts_with("r\"") {
            let hashes = rest[1..].chars().take_while(|c| *c == '#').count();
            let close = format!("\"{}", "#".repeat(hashes));
            let body = 2 + hashes;
            let end = rest[body..]
                .find(&close)
                .map(|e| body + e + close.len())
                .unwrap_or(rest.len());
            out.extend(
                rest[..end]
                    .chars()
                    .map(|c| if c == '\n' { '\n' } else { ' ' }),
            );
            i += end;
        } else if rest.starts_with('"') {
            let mut j = 1;
            while j < rest.len() {
                match rest.as_bytes()[j] {
                    b'\\' => j += 2,
                    b'"' => {
                        j += 1;
                        break;
                    }
                    _ => j += 1,
                }
            }
            let end = j.min(rest.len());
            out.extend(
                rest[..end]
                    .chars()
                    .map(|c| if c == '\n' { '\n' } else { ' ' }),
            );
            i += end;
        } else if rest.starts_with("'{'") || rest.starts_with("'}'") || rest.starts_with("'\"'") {
            out.push_str("   ");
            i += 3;
        } else {
            let c = rest.chars().next().unwrap_or(' ');
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// Every path a piece of code names through `crate::` or `super::`, resolved to a path from
/// the crate root, for code in module `module`. `use` trees are expanded (`use crate::a::{b,
/// c::{d, e}}` names `a::b`, `a::c::d` and `a::c::e`), and `super` counts inline modules.
fn crate_paths(code: &str, module: &[String]) -> Vec<Vec<String>> {
    let tokens = tokenize(code);
    let mut out = Vec::new();
    // Inline modules (`mod tests { … }`) open at a brace depth; `super` inside them starts there.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < tokens.len() {
        let t = tokens[i].as_str();
        match t {
            "{" => depth += 1,
            "}" => {
                depth = depth.saturating_sub(1);
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
            }
            "mod" if tokens.get(i + 2).is_some_and(|t| t == "{") => {
                inline.push((tokens[i + 1].clone(), depth));
            }
            _ => {}
        }
        let here: Vec<String> = module
            .iter()
            .cloned()
            .chain(inline.iter().map(|(m, _)| m.clone()))
            .collect();
        let start_of_path = (t == "crate" || t == "super")
            && tokens.get(i + 1).is_some_and(|n| n == "::")
            && !(i > 0 && (tokens[i - 1] == "$" || tokens[i - 1] == "::"));
        if start_of_path {
            let (paths, next) = path_tree(&tokens, i);
            for p in paths {
                if let Some(resolved) = resolve(&p, &here) {
                    out.push(resolved);
                }
            }
            i = next;
            continue;
        }
        i += 1;
    }
    out
}

fn tokenize(code: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let chars: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push(chars[start..i].iter().collect());
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            tokens.push("::".into());
            i += 2;
        } else if c.is_whitespace() {
            i += 1;
        } else {
            tokens.push(c.to_string());
            i += 1;
        }
    }
    tokens
}

/// The paths of a path or `use` tree starting at `tokens[i]`, and the index after it.
fn path_tree(tokens: &[String], mut i: usize) -> (Vec<Vec<String>>, usize) {
    let mut prefix = Vec::new();
    loop {
        let Some(t) = tokens.get(i) else {
            return (vec![prefix], i);
        };
        if t == "{" {
            let mut paths = Vec::new();
            i += 1;
            loop {
                match tokens.get(i).map(String::as_str) {
                    None => return (paths, i),
                    Some("}") => return (paths, i + 1),
                    Some(",") => i += 1,
                    Some(_) => {
                        let (sub, next) = path_tree(tokens, i);
                        for s in sub {
                            let mut p = prefix.clone();
                            p.extend(s);
                            paths.push(p);
                        }
                        // Skip `as name` and anything else up to the next item.
                        i = next;
                        while tokens
                            .get(i)
                            .is_some_and(|t| t != "," && t != "}" && t != ";")
                        {
                            i += 1;
                        }
                    }
                }
            }
        }
        if t == "*" || !(t.chars().all(|c| c.is_alphanumeric() || c == '_')) {
            if t == "*" {
                i += 1;
            }
            return (vec![prefix], i);
        }
        prefix.push(t.clone());
        i += 1;
        if tokens.get(i).is_some_and(|t| t == "::") {
            i += 1;
        } else {
            return (vec![prefix], i);
        }
    }
}

/// A `crate::…` or `super::…` path as a path from the crate root.
fn resolve(path: &[String], here: &[String]) -> Option<Vec<String>> {
    let mut base: Vec<String> = here.to_vec();
    let mut rest = path;
    match rest.first().map(String::as_str) {
        Some("crate") => {
            base.clear();
            rest = &rest[1..];
        }
        Some("super") => {
            while rest.first().is_some_and(|s| s == "super") {
                base.pop()?;
                rest = &rest[1..];
            }
        }
        _ => return None,
    }
    base.extend(rest.iter().cloned());
    Some(base)
}

/// What is wrong with one file, given its path under `src` and its text.
fn violations(rel: &Path, src: &str) -> Vec<String> {
    let name = rel.display().to_string();
    let module = module_of(rel);
    let mut out = Vec::new();
    let own = match module.first() {
        Some(first) if LAYERS.contains(&first.as_str()) => rank(first),
        _ if rel.parent() == Some(Path::new("")) && TOP_FILES.contains(&name.as_str()) => {
            LAYERS.len()
        }
        _ => {
            out.push(format!(
                "{name}: belongs to no layer (put it under {}/ or make it a top file)",
                LAYERS.join("/, ")
            ));
            return out;
        }
    };
    let code = code_only(src);
    let mut seen = BTreeSet::new();
    for path in crate_paths(&code, &module) {
        let Some(first) = path.first() else { continue };
        if !ROOT_MODULES.contains(&first.as_str()) && name != "lib.rs" {
            if seen.insert(format!("reexport {first}")) {
                out.push(format!(
                    "{name}: imports `crate::{first}`, a re-export of lib.rs; name its module path"
                ));
            }
            continue;
        }
        let theirs = rank(first);
        if theirs > own && seen.insert(format!("up {}", path.join("::"))) {
            out.push(format!(
                "{name} ({}) imports `crate::{}` from a layer above it",
                layer_name(own),
                path.join("::")
            ));
        }
    }
    if own == 0 {
        let tokens = tokenize(&code);
        for w in tokens.windows(2) {
            if NOT_IN_CORE.contains(&w[0].as_str())
                && w[1] == "::"
                && seen.insert(format!("extern {}", w[0]))
            {
                out.push(format!("{name} (core) uses `{}`", w[0]));
            }
        }
    }
    out
}

fn layer_name(rank: usize) -> &'static str {
    LAYERS.get(rank).copied().unwrap_or("top")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn every_layer_imports_only_those_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    assert!(files.len() > 30, "found only {} files", files.len());
    let mut all = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).expect("read a source file");
        let rel = f.strip_prefix(&src).expect("under src");
        all.extend(violations(rel, &text));
    }
    assert!(all.is_empty(), "layer rule broken:\n{}", all.join("\n"));
}

#[test]
fn the_checker_sees_upward_imports_grouped_nested_and_inline() {
    let v = violations(
        Path::new("core/error.rs"),
        "use crate::core::codec;\nuse crate::{core::plan, exec::{op::{self, OpRef}, stream}};\n\
         fn f() -> crate::cluster::ClusterError { todo() }\n",
    );
    assert!(v.iter().any(|m| m.contains("crate::exec::op")), "{v:?}");
    assert!(v.iter().any(|m| m.contains("crate::exec::stream")), "{v:?}");
    assert!(
        v.iter().any(|m| m.contains("crate::cluster::ClusterError")),
        "{v:?}"
    );
    assert!(!v.iter().any(|m| m.contains("crate::core::plan")), "{v:?}");
}

#[test]
fn the_checker_resolves_super_and_ignores_comments_strings_and_macros() {
    // `super` from exec/op/erased.rs is exec::op: allowed.
    let ok = violations(
        Path::new("exec/op/erased.rs"),
        "use super::Op;\n// use crate::driver::context::Context;\n\
         const S: &str = \"crate::cluster::X\";\nmacro_rules! m { () => { $crate::Context } }\n\
         mod tests { use super::*; use super::super::registry; }\n",
    );
    assert!(ok.is_empty(), "{ok:?}");
    // `super::super` from driver/rdd/mod.rs reaches the root: a re-export.
    let bad = violations(
        Path::new("driver/rdd/mod.rs"),
        "use super::super::Context;\n",
    );
    assert!(bad.iter().any(|m| m.contains("re-export")), "{bad:?}");
    let up = violations(
        Path::new("exec/broadcast.rs"),
        "use crate::driver::context::Cleaner;",
    );
    assert_eq!(up.len(), 1, "{up:?}");
}

#[test]
fn the_checker_refuses_reexports_tokio_in_core_and_files_outside_layers() {
    let v = violations(Path::new("driver/scheduler.rs"), "use crate::Context;");
    assert!(v.iter().any(|m| m.contains("re-export")), "{v:?}");
    let v = violations(
        Path::new("core/plan.rs"),
        "fn f() { tokio::spawn(async {}); }",
    );
    assert!(v.iter().any(|m| m.contains("tokio")), "{v:?}");
    let v = violations(Path::new("scheduler.rs"), "");
    assert!(v.iter().any(|m| m.contains("no layer")), "{v:?}");
    assert!(violations(Path::new("master.rs"), "use crate::cluster::X;").is_empty());
}
