//! The domain is pure: `src/domain` may not reach the web framework, the async runtime,
//! IO, the clock or randomness (DESIGN.md; STYLE.md § 1). Callers pass `now`, and the
//! runtime owns every side effect, so that the core is testable to the millisecond and
//! replayable. This test reads the domain's source and fails on any such path, so the
//! rule holds without anyone remembering it.
//!
//! Only code counts: comments and string literals are blanked first (a doc comment may
//! say "tokio"). Every reference counts, not only `use` lines: `tokio::spawn(..)` inline
//! is as much a dependency.

use std::path::{Path, PathBuf};

/// What the domain must not name, and why.
const FORBIDDEN: &[(&str, &str)] = &[
    ("actix", "the web framework belongs in api/"),
    ("tokio", "the async runtime belongs in runtime/"),
    ("futures", "async code belongs in runtime/ or api/"),
    ("reqwest", "network IO"),
    ("hyper", "network IO"),
    ("rusqlite", "storage IO belongs in store/"),
    (
        "std::fs",
        "file IO: read files in config.rs or runtime/, pass the text in",
    ),
    ("std::net", "network IO"),
    ("std::io", "IO (formatting goes through std::fmt)"),
    ("std::process", "process IO"),
    (
        "std::env",
        "the environment is configuration: read it in cli.rs",
    ),
    ("std::thread", "threads belong in runtime/"),
    (
        "SystemTime",
        "a clock: take `now: Timestamp` as an argument",
    ),
    ("Instant", "a clock: take `now: Timestamp` as an argument"),
    (
        "::now(",
        "a clock read: take `now: Timestamp` as an argument",
    ),
    ("new_v4", "randomness: take ids and tokens from the caller"),
    ("rand::", "randomness"),
    ("thread_rng", "randomness"),
    ("getrandom", "randomness"),
    ("fastrand", "randomness"),
];

#[test]
fn domain_names_no_framework_runtime_io_clock_or_randomness() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/domain");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    assert!(files.len() > 10, "found the domain's files: {files:?}");

    let mut violations = Vec::new();
    for file in &files {
        let source = std::fs::read_to_string(file).unwrap();
        for (line, path, why) in violations_in(&source) {
            violations.push(format!(
                "{}:{line}: `{path}`: {why}",
                file.strip_prefix(env!("CARGO_MANIFEST_DIR"))
                    .unwrap()
                    .display()
            ));
        }
    }

    assert!(
        violations.is_empty(),
        "src/domain must stay pure:\n{}",
        violations.join("\n")
    );
}

/// Inside the crate, imports point one way: `domain` <- `runtime` <- `audit` <- `store`,
/// `api` <- `web`; `app` over all; `client` beside them all, a leaf (ARCHITECTURE.md). For each layer, the modules it may not name.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "src/domain",
        &[
            "crate::runtime",
            "crate::audit",
            "crate::store",
            "crate::api",
            "crate::web",
            "crate::app",
            "crate::metrics",
        ],
    ),
    (
        "src/runtime",
        &[
            "crate::audit",
            "crate::store",
            "crate::api",
            "crate::web",
            "crate::app",
            "crate::metrics",
            "actix",
        ],
    ),
    // The audit log reads causes and events; the store writes its rows, the API
    // answers its queries, `app` wires it to the publisher: none of them is below it.
    (
        "src/audit",
        &[
            "crate::store",
            "crate::api",
            "crate::web",
            "crate::app",
            "crate::metrics",
            "actix",
            "utoipa",
        ],
    ),
    (
        "src/store",
        &[
            "crate::api",
            "crate::web",
            "crate::app",
            "crate::metrics",
            "actix",
        ],
    ),
    // Metrics read the broker (runtime, domain) and the routes' rules (auth); the API
    // records requests into them, `app` wires them: none of those is below.
    (
        "src/metrics",
        &["crate::store", "crate::api", "crate::web", "crate::app"],
    ),
    ("src/api", &["crate::store", "crate::web", "crate::app"]),
    // The page is served like the API, through its `Broker` extractor and errors.
    ("src/web", &["crate::store", "crate::app"]),
    // The command-line client speaks HTTP only: no part of the service, so that it
    // works against any rentabot serving the API, and the service's types stay free to
    // change (it reads answers as JSON values).
    (
        "src/client",
        &[
            "crate::domain",
            "crate::runtime",
            "crate::audit",
            "crate::store",
            "crate::api",
            "crate::web",
            "crate::app",
            "crate::metrics",
            "crate::auth",
            "crate::config",
            "crate::telemetry",
            "crate::tools",
            "crate::cli",
            "actix",
            "tokio",
            "rusqlite",
        ],
    ),
];

#[test]
fn layers_import_only_the_layers_below() {
    let mut violations = Vec::new();
    for (dir, forbidden) in LAYERS {
        let mut files = Vec::new();
        rust_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join(dir), &mut files);
        assert!(!files.is_empty(), "found {dir}'s files");
        for file in &files {
            let code = blank_comments_and_strings(&std::fs::read_to_string(file).unwrap());
            let flat = flatten_groups(&code);
            for (index, line) in flat.lines().enumerate() {
                let line = tight_paths(line);
                for path in forbidden.iter().filter(|p| names(&line, p)) {
                    violations.push(format!(
                        "{}:{}: `{path}`",
                        file.strip_prefix(env!("CARGO_MANIFEST_DIR"))
                            .unwrap()
                            .display(),
                        index + 1
                    ));
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "a layer names one above it or beside it:\n{}",
        violations.join("\n")
    );
}

#[test]
fn scanner_flags_each_kind_of_dependency_and_ignores_comments_and_strings() {
    for (source, flagged, why) in [
        ("use tokio::sync::Mutex;", Some("tokio"), "a runtime import"),
        (
            "fn f() { tokio::spawn(async {}); }",
            Some("tokio"),
            "an inline path",
        ),
        (
            "use actix_web::HttpResponse;",
            Some("actix"),
            "the framework",
        ),
        ("use std::fs::read;", Some("std::fs"), "file IO"),
        ("use std::{fs, fmt};", Some("std::fs"), "a grouped import"),
        (
            "use std::{\n    collections::BTreeMap,\n    io::Write,\n};",
            Some("std::io"),
            "a nested group",
        ),
        (
            "let t = std::time::SystemTime::now();",
            Some("SystemTime"),
            "the wall clock",
        ),
        (
            "let t = Instant::now();",
            Some("Instant"),
            "the monotonic clock",
        ),
        (
            "let t = chrono::Utc::now();",
            Some("::now("),
            "chrono's clock",
        ),
        ("let id = Uuid::new_v4();", Some("new_v4"), "randomness"),
        ("let x: u8 = rand::random();", Some("rand::"), "randomness"),
        ("// tokio::spawn is not for us", None, "a line comment"),
        (
            "/* std::fs::read_to_string */ let a = 1;",
            None,
            "a block comment",
        ),
        (
            "/// Returns `Instant::now()`, never.\nfn f() {}",
            None,
            "a doc comment",
        ),
        (
            r#"let s = "tokio::spawn and std::fs";"#,
            None,
            "a string literal",
        ),
        (r##"let s = r#"Instant::now()"#;"##, None, "a raw string"),
        (
            "let c = '\"'; let t = SystemTime::UNIX_EPOCH;",
            Some("SystemTime"),
            "a quote char",
        ),
        (
            "fn f<'a>(x: &'a str) -> &'a str { x }",
            None,
            "lifetimes are not chars",
        ),
        (
            "fn operand() {} fn random_name() {}",
            None,
            "words that only contain a name",
        ),
        (
            "fn now(t: Timestamp) -> Timestamp { t }",
            None,
            "a parameter called now",
        ),
        (
            "impl T { pub fn generate() -> Self { T(Uuid::new_v4()) } }",
            Some("new_v4"),
            "no function is exempt",
        ),
    ] {
        let found: Vec<&str> = violations_in(source)
            .into_iter()
            .map(|(_, p, _)| p)
            .collect();
        match flagged {
            Some(path) => assert!(found.contains(&path), "{why}: {source:?} gave {found:?}"),
            None => assert!(found.is_empty(), "{why}: {source:?} gave {found:?}"),
        }
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `(line, forbidden path, why)` for every forbidden path in the code of `source`.
fn violations_in(source: &str) -> Vec<(usize, &'static str, &'static str)> {
    let code = blank_comments_and_strings(source);
    let flat = flatten_groups(&code);
    let mut found = Vec::new();
    for (index, line) in flat.lines().enumerate() {
        let line = tight_paths(line);
        for (path, why) in FORBIDDEN {
            if names(&line, path) {
                found.push((index + 1, *path, *why));
            }
        }
    }
    found
}

/// `line` without whitespace around `::` and before `(`: `std :: fs` is `std::fs`.
fn tight_paths(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let chars: Vec<char> = line.chars().collect();
    for (i, c) in chars.iter().enumerate() {
        if c.is_whitespace() {
            let rest: String = chars[i..]
                .iter()
                .skip_while(|c| c.is_whitespace())
                .take(2)
                .collect();
            if out.ends_with("::") || rest.starts_with("::") || rest.starts_with('(') {
                continue;
            }
        }
        out.push(*c);
    }
    out
}

/// Whether `code` contains `path` as a name, not inside a longer
/// identifier: `tokio` matches `tokio::` and `tokio_util`, not `mytokio`; `rand::`
/// does not match `operand::`.
fn names(code: &str, path: &str) -> bool {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    code.match_indices(path).any(|(at, _)| {
        let before = code[..at].chars().next_back();
        let starts_word = path.starts_with(':') || !before.is_some_and(is_ident);
        let after = code[at + path.len()..].chars().next();
        // A crate name may continue with `_` (`tokio_util`, `actix_web`); other paths
        // end where an identifier ends.
        let ends_word = path.ends_with([':', '(']) || !after.is_some_and(is_ident) || {
            !path.contains(':') && after == Some('_')
        };
        starts_word && ends_word
    })
}

/// Rewrites `use std::{fs, fmt::Write, io::{self, Read}};` so that each leaf appears
/// with its full path on the same line (`std::fs std::fmt::Write std::io::self ...`),
/// so that grouped imports cannot hide a path. Line numbers are kept.
fn flatten_groups(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut prefixes: Vec<String> = Vec::new();
    let mut word = String::new();
    for c in code.chars() {
        match c {
            '{' if word.ends_with("::") => {
                let base = format!("{}{}", prefixes.last().map_or("", |s| s.as_str()), word);
                prefixes.push(base);
                word.clear();
                out.push('{');
            }
            '{' => {
                prefixes.push(prefixes.last().cloned().unwrap_or_default());
                flush(&mut out, &mut word, &prefixes);
                out.push('{');
            }
            '}' => {
                flush(&mut out, &mut word, &prefixes);
                prefixes.pop();
                out.push('}');
            }
            c if c.is_alphanumeric() || c == '_' || c == ':' => word.push(c),
            c => {
                flush(&mut out, &mut word, &prefixes);
                out.push(c);
            }
        }
    }
    flush(&mut out, &mut word, &prefixes);
    out
}

fn flush(out: &mut String, word: &mut String, prefixes: &[String]) {
    if !word.is_empty() {
        if let Some(prefix) = prefixes.last() {
            out.push_str(prefix);
        }
        out.push_str(word);
        word.clear();
    }
}

/// `source` with comments, string and char literals replaced by spaces (newlines kept,
/// so line numbers hold).
fn blank_comments_and_strings(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    let blank = |out: &mut String, c: char| out.push(if c == '\n' { '\n' } else { ' ' });
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                blank(&mut out, chars[i]);
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, chars[i]);
                    i += 1;
                }
            }
        } else if c == 'r' && matches!(next, Some('#') | Some('"')) && !prev_is_ident(&chars, i) {
            // A raw string: r"..." or r#"..."#, any number of #.
            let hashes = chars[i + 1..].iter().take_while(|c| **c == '#').count();
            if chars.get(i + 1 + hashes) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            let close: String = std::iter::once('"')
                .chain(std::iter::repeat_n('#', hashes))
                .collect();
            let body_start = i + 2 + hashes;
            let rest: String = chars[body_start..].iter().collect();
            let end = rest.find(&close).map_or(chars.len(), |e| {
                body_start + rest[..e].chars().count() + close.chars().count()
            });
            for c in &chars[i..end] {
                blank(&mut out, *c);
            }
            i = end;
        } else if c == '"' {
            blank(&mut out, c);
            i += 1;
            while i < chars.len() {
                let d = chars[i];
                blank(&mut out, d);
                i += 1;
                if d == '\\' && i < chars.len() {
                    blank(&mut out, chars[i]);
                    i += 1;
                } else if d == '"' {
                    break;
                }
            }
        } else if c == '\'' && is_char_literal(&chars, i) {
            blank(&mut out, c);
            i += 1;
            while i < chars.len() {
                let d = chars[i];
                blank(&mut out, d);
                i += 1;
                if d == '\\' && i < chars.len() {
                    blank(&mut out, chars[i]);
                    i += 1;
                } else if d == '\'' {
                    break;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn prev_is_ident(chars: &[char], i: usize) -> bool {
    i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_')
}

/// `'x'` or `'\n'` rather than a lifetime `'a`.
fn is_char_literal(chars: &[char], i: usize) -> bool {
    match chars.get(i + 1) {
        Some('\\') => true,
        Some(_) => chars.get(i + 2) == Some(&'\''),
        None => false,
    }
}
