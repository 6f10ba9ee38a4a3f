//! README.md's shell examples are true: every ```sh block runs, in order, in one bash
//! (`set -euo pipefail`) against the real binary serving `descriptors/example.yaml`, as
//! the Quick start starts it, and the answers are what the comments under each command
//! say.
//!
//! - Only the blocks that build or test this repository (every command `cargo …` or
//!   `bash .ci/run`) are skipped: running them here would recurse.
//! - The examples' address, `127.0.0.1:8000`, becomes the test server's.
//! - `curl` is wrapped: it runs as written (plus `--max-time`, 1 s for `-N` streams,
//!   whose timeout then counts as success), and each call's status and output are kept.
//! - A comment right under a command is the expected answer of the command's last
//!   `curl`: an optional status (`409 {…}`), headers (`link: <…>; rel="first", …`) and
//!   JSON. Every `"key": value` in it with a plain value must appear in the answer (at
//!   any depth). `…` stands for anything: `"Force-unlocked at …: board died"` needs both
//!   parts in order, `["…","…"]` any two items, `{…}` and a bare `…` anything; a
//!   timestamp needs to be one. Without a status, the answer must be a success.
//! - `pidof rentabot` names the test's server, not whatever else runs on the machine.
//! - The server runs with `--persist` on a file in a temporary directory; the examples'
//!   shell has `RENTABOT_PERSIST` naming it, `TMPDIR` that directory, and the binary on
//!   its `PATH`, so the state tools' examples run on the served file.
//!
//! Needs bash, curl (7.63 or newer) and jq, as the README's readers do.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

const PATIENCE: Duration = Duration::from_secs(20);
/// Set in the environment of the examples' shell.
const INSIDE_EXAMPLES: &str = "RENTABOT_README_EXAMPLES";

#[test]
fn every_shell_example_in_the_readme_runs_and_answers_as_its_comments_say() {
    // Set for the examples' shell: an example that ran this test suite would otherwise
    // start this test again, without end.
    if std::env::var_os(INSIDE_EXAMPLES).is_some() {
        return;
    }
    for tool in ["bash", "curl", "jq"] {
        let found = Command::new(tool).arg("--version").output();
        assert!(
            found.is_ok_and(|o| o.status.success()),
            "the README examples need {tool}: install it (Debian: apt-get install {tool})"
        );
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let blocks = sh_blocks(&readme);
    let (runnable, skipped): (Vec<&Block>, Vec<&Block>) =
        blocks.iter().partition(|b| !b.builds_the_repository());
    assert!(runnable.len() >= 8, "found the examples: {blocks:?}");
    assert!(
        skipped.len() <= 2,
        "only Quick start and Development: {skipped:?}"
    );

    // The examples' server keeps its state in a file, as README § Keeping state starts
    // it; the tools there find it through RENTABOT_PERSIST, and write to TMPDIR.
    let scratch = tempfile::tempdir().unwrap();
    let persist = format!("sqlite:///{}", scratch.path().join("state.db").display());
    let server = Server::start(root, &persist);
    let records = tempfile::tempdir().unwrap();
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_rentabot")).parent().unwrap();
    let path = std::env::join_paths(std::iter::once(bin_dir.to_path_buf()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .unwrap();
    let (script, lines) = script(&runnable, &server, records.path());
    let run = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(root)
        .env("BUILD_URL", "https://ci.example.org/job/nightly/42/")
        .env(INSIDE_EXAMPLES, "1")
        .env("RENTABOT_PERSIST", &persist)
        .env("TMPDIR", scratch.path())
        .env("PATH", path)
        .stdin(Stdio::null())
        .output()
        .expect("bash runs");
    let stderr = String::from_utf8_lossy(&run.stderr);
    if !run.status.success() {
        // The ERR trap's line, or bash's own `bash: line N:` (an unset variable).
        let at = stderr
            .lines()
            .find_map(|l| {
                l.strip_prefix("FAILED AT ")
                    .or_else(|| l.strip_prefix("bash: line "))
                    .and_then(|rest| rest.split(':').next())
                    .and_then(|n| n.trim().parse::<usize>().ok())
            })
            .and_then(|n| lines.get(n.saturating_sub(1)).copied().flatten());
        panic!(
            "a README example failed (README.md line {at:?}), {}:\n{stderr}\nstdout:\n{}",
            run.status,
            String::from_utf8_lossy(&run.stdout)
        );
    }

    let calls = recorded_calls(records.path());
    let expected: Vec<Option<Expectation>> = runnable.iter().flat_map(|b| b.curl_calls()).collect();
    assert_eq!(
        calls.len(),
        expected.len(),
        "curl ran {} times, the README shows {} calls: {calls:#?}",
        calls.len(),
        expected.len()
    );
    let mut failures = Vec::new();
    for (call, expectation) in calls.iter().zip(&expected) {
        if let Some(expectation) = expectation
            && let Err(why) = expectation.check(call)
        {
            failures.push(format!(
                "README.md line {}: curl {}\n  {why}\n  got {} {}",
                expectation.line, call.args, call.status, call.output
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(
        expected.iter().flatten().count() >= 10,
        "the README shows answers to check"
    );
}

/// One fenced ```sh block: its first line's number in README.md, and its lines.
#[derive(Debug)]
struct Block {
    line: usize,
    lines: Vec<String>,
}

fn sh_blocks(readme: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut current: Option<Block> = None;
    for (index, line) in readme.lines().enumerate() {
        match &mut current {
            None => {
                let info = line.trim_start().strip_prefix("```");
                if info.is_some_and(|i| i.trim() == "sh" || i.starts_with("sh ")) {
                    current = Some(Block {
                        line: index + 2,
                        lines: Vec::new(),
                    });
                }
            }
            Some(block) if line.trim_start().starts_with("```") => {
                blocks.push(std::mem::replace(
                    block,
                    Block {
                        line: 0,
                        lines: Vec::new(),
                    },
                ));
                current = None;
            }
            Some(block) => block.lines.push(line.to_owned()),
        }
    }
    blocks
}

impl Block {
    /// Every command is `cargo …` or one of the repository's own scripts (`.ci/run`,
    /// `tests/*.sh`): it builds or tests this repository.
    fn builds_the_repository(&self) -> bool {
        self.lines
            .iter()
            .map(|l| l.trim())
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .all(|l| {
                let l = l.strip_prefix("bash ").unwrap_or(l);
                l.starts_with("cargo ") || l.starts_with(".ci/run") || l.starts_with("tests/")
            })
    }

    /// For each `curl` the block runs, in order: the answer its comment expects, if any.
    fn curl_calls(&self) -> Vec<Option<Expectation>> {
        let mut calls: Vec<Option<Expectation>> = Vec::new();
        // Comment lines right under a command (or under such comments) describe the
        // answer of the command's last curl.
        let mut under_command = false;
        let mut pending: Vec<(usize, String)> = Vec::new();
        let flush = |calls: &mut Vec<Option<Expectation>>, pending: &mut Vec<(usize, String)>| {
            if !pending.is_empty() {
                let expectation = Expectation::parse(pending);
                if let Some(last) = calls.last_mut() {
                    *last = Some(expectation);
                }
                pending.clear();
            }
        };
        let mut open_quote = false;
        for (offset, line) in self.lines.iter().enumerate() {
            let trimmed = line.trim_start();
            if !open_quote && trimmed.starts_with('#') {
                let text = trimmed.trim_start_matches('#');
                let text = text.strip_prefix(' ').unwrap_or(text);
                if under_command
                    && (is_answer(text) || (!pending.is_empty() && text.starts_with(' ')))
                {
                    pending.push((self.line + offset, text.to_owned()));
                } else {
                    flush(&mut calls, &mut pending);
                    under_command = false;
                }
                continue;
            }
            if trimmed.is_empty() {
                flush(&mut calls, &mut pending);
                under_command = false;
                continue;
            }
            flush(&mut calls, &mut pending);
            let code = code_of(line, &mut open_quote);
            for _ in 0..curl_commands(&code) {
                calls.push(None);
            }
            under_command = !open_quote && !line.trim_end().ends_with('\\');
        }
        flush(&mut calls, &mut pending);
        calls
    }
}

/// The first line of an answer: a status, a header, or JSON.
fn is_answer(text: &str) -> bool {
    let status = text.len() >= 3 && text[..3].bytes().all(|b| b.is_ascii_digit());
    let header = text.split_once(": ").is_some_and(|(name, _)| {
        !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
    });
    status || header || text.starts_with('{') || text.starts_with('[')
}

/// The line with single-quoted text and the trailing comment removed; `open_quote`
/// carries a single quote left open to the next line (a multi-line `-d '{…}'`).
fn code_of(line: &str, open_quote: &mut bool) -> String {
    let mut code = String::new();
    let mut double = false;
    let mut previous = ' ';
    for c in line.chars() {
        if *open_quote {
            if c == '\'' {
                *open_quote = false;
            }
            code.push(' ');
        } else if c == '\'' && !double {
            *open_quote = true;
            code.push(' ');
        } else if c == '"' {
            double = !double;
            code.push(c);
        } else if c == '#' && !double && previous.is_whitespace() {
            break;
        } else {
            code.push(c);
        }
        previous = c;
    }
    code
}

/// How many times `code` runs curl: as a command word at the start, after `$(`, `|`,
/// `;` or `&&`.
fn curl_commands(code: &str) -> usize {
    let words: Vec<&str> = code
        .split(|c: char| c.is_whitespace() || c == '(')
        .filter(|w| !w.is_empty())
        .collect();
    words
        .iter()
        .enumerate()
        .filter(|(i, w)| {
            **w == "curl"
                && (*i == 0
                    || matches!(words[i - 1], "|" | ";" | "&&" | "$")
                    || words[i - 1].ends_with('$')
                    || words[i - 1].ends_with('='))
        })
        .count()
}

/// What a comment says a call answers.
#[derive(Debug)]
struct Expectation {
    /// README.md line of its first line.
    line: usize,
    status: Option<u16>,
    headers: Vec<(String, String)>,
    json: String,
}

impl Expectation {
    fn parse(lines: &[(usize, String)]) -> Expectation {
        let mut expectation = Expectation {
            line: lines[0].0,
            status: None,
            headers: Vec::new(),
            json: String::new(),
        };
        let mut in_header = false;
        for (index, (_, text)) in lines.iter().enumerate() {
            let mut text = text.as_str();
            if index == 0 && text.len() >= 3 && text[..3].bytes().all(|b| b.is_ascii_digit()) {
                expectation.status = text[..3].parse().ok();
                text = text[3..].trim_start();
            }
            if text.starts_with(' ') && in_header {
                let (_, value) = expectation.headers.last_mut().unwrap();
                value.push(' ');
                value.push_str(text.trim());
                continue;
            }
            let text = text.trim();
            if let Some((name, value)) = text.split_once(": ")
                && !text.starts_with(['{', '[', '"'])
                && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
            {
                expectation
                    .headers
                    .push((name.to_owned(), value.to_owned()));
                in_header = true;
            } else {
                expectation.json.push_str(text);
                in_header = false;
            }
        }
        expectation
    }

    fn check(&self, call: &Call) -> Result<(), String> {
        match self.status {
            Some(status) if call.status != status => {
                return Err(format!("status {status} expected"));
            }
            None if !self.json.is_empty() && !(200..300).contains(&call.status) => {
                return Err("a success expected".to_owned());
            }
            _ => {}
        }
        let (headers, body) = split_head(&call.output);
        for (name, value) in &self.headers {
            let actual = headers
                .get(name.as_str())
                .ok_or_else(|| format!("no {name} header in {headers:?}"))?;
            for part in value
                .split('…')
                .map(|p| p.trim().trim_end_matches(',').trim())
            {
                if !part.is_empty() && !actual.contains(part) {
                    return Err(format!("{name}: {part:?} is not in {actual:?}"));
                }
            }
        }
        if self.json.is_empty() {
            return Ok(());
        }
        let answer: Value =
            serde_json::from_str(body).map_err(|e| format!("the answer is not JSON ({e})"))?;
        for (key, literal) in pairs(&self.json) {
            let found = values_of(&answer, &key);
            if found.is_empty() {
                return Err(format!("no {key:?} in the answer"));
            }
            let Ok(expected) = serde_json::from_str::<Value>(&literal) else {
                continue; // `…` somewhere in it: the key is enough
            };
            match &expected {
                Value::String(s) if s.contains('…') => {
                    if !found
                        .iter()
                        .any(|v| v.as_str().is_some_and(|a| matches_elided(a, s)))
                    {
                        return Err(format!("{key:?} is {found:?}, the README says {s:?}"));
                    }
                }
                Value::Array(items)
                    if items
                        .iter()
                        .any(|i| i.as_str().is_some_and(|s| s.contains('…'))) =>
                {
                    if !found
                        .iter()
                        .any(|v| v.as_array().is_some_and(|a| a.len() == items.len()))
                    {
                        return Err(format!(
                            "{key:?} is {found:?}, the README shows {} items",
                            items.len()
                        ));
                    }
                }
                Value::String(s) if is_timestamp(s) => {
                    if !found.iter().any(|v| v.as_str().is_some_and(is_timestamp)) {
                        return Err(format!("{key:?} is not a timestamp: {found:?}"));
                    }
                }
                _ => {
                    if !found.contains(&&expected) {
                        return Err(format!("{key:?} is {found:?}, the README says {expected}"));
                    }
                }
            }
        }
        Ok(())
    }
}

/// `(key, value)` for every `"key": value` in `text` whose value is a string, number,
/// boolean, null, or a flat array of those (`{…}` values are skipped: their own pairs
/// are found on their own).
fn pairs(text: &str) -> Vec<(String, String)> {
    let chars: Vec<char> = text.chars().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '"' {
            i += 1;
            continue;
        }
        let (string, end) = read_string(&chars, i);
        i = end;
        let mut j = end;
        while chars.get(j).is_some_and(|c| c.is_whitespace()) {
            j += 1;
        }
        if chars.get(j) != Some(&':') {
            continue;
        }
        j += 1;
        while chars.get(j).is_some_and(|c| c.is_whitespace()) {
            j += 1;
        }
        let value_end = match chars.get(j) {
            Some('"') => read_string(&chars, j).1,
            Some('[') => match chars[j..].iter().position(|c| *c == ']') {
                // A flat array only: `[1,2]`, not `[{…}]`.
                Some(close)
                    if !chars[j + 1..j + close]
                        .iter()
                        .any(|c| matches!(c, '{' | '[')) =>
                {
                    j + close + 1
                }
                _ => continue,
            },
            Some(c) if c.is_ascii_digit() || *c == '-' || c.is_ascii_alphabetic() => {
                j + chars[j..]
                    .iter()
                    .position(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-')))
                    .unwrap_or(chars.len() - j)
            }
            _ => continue,
        };
        let key: String = string.into_iter().collect();
        found.push((key, chars[j..value_end].iter().collect()));
        i = value_end;
    }
    found
}

/// The string starting at `chars[start] == '"'`: its characters (escapes kept) and the
/// index after its closing quote.
fn read_string(chars: &[char], start: usize) -> (Vec<char>, usize) {
    let mut out = Vec::new();
    let mut i = start + 1;
    while i < chars.len() {
        match chars[i] {
            '\\' => {
                out.push('\\');
                if let Some(c) = chars.get(i + 1) {
                    out.push(*c);
                }
                i += 2;
            }
            '"' => return (out, i + 1),
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    (out, i)
}

/// Every value under `key`, at any depth.
fn values_of<'a>(value: &'a Value, key: &str) -> Vec<&'a Value> {
    let mut found = Vec::new();
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if k == key {
                    found.push(v);
                }
                found.extend(values_of(v, key));
            }
        }
        Value::Array(items) => items.iter().for_each(|v| found.extend(values_of(v, key))),
        _ => {}
    }
    found
}

/// Whether `actual` has every part of `elided` between its `…`, in order.
fn matches_elided(actual: &str, elided: &str) -> bool {
    let mut rest = actual;
    for part in elided.split('…').filter(|p| !p.is_empty()) {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// `2026-11-25T10:00:00.000Z` or `2026-11-25T10:00:00Z`.
fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 20 && b[4] == b'-' && b[7] == b'-' && b[10] == b'T' && s.ends_with('Z')
}

/// Response headers (lower-case names) and the body, when the output starts with a head
/// (`curl -i`); otherwise no headers and the whole output.
fn split_head(output: &str) -> (BTreeMap<String, String>, &str) {
    if !output.starts_with("HTTP/") {
        return (BTreeMap::new(), output);
    }
    let (head, body) = output.split_once("\r\n\r\n").unwrap_or((output, ""));
    let headers = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (headers, body)
}

/// One curl the script ran.
#[derive(Debug)]
struct Call {
    args: String,
    status: u16,
    output: String,
}

fn recorded_calls(dir: &Path) -> Vec<Call> {
    let count: usize = std::fs::read_to_string(dir.join("n"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    (1..=count)
        .map(|n| {
            let read = |ext: &str| {
                std::fs::read_to_string(dir.join(format!("{n}.{ext}"))).unwrap_or_default()
            };
            let status = read("status");
            let digits: String = status
                .chars()
                .rev()
                .take(3)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            Call {
                args: read("args").trim().to_owned(),
                status: digits.parse().unwrap_or(0),
                output: read("out"),
            }
        })
        .collect()
}

/// The bash script: the wrappers, then every runnable block; and for each script line,
/// the README line it came from.
fn script(blocks: &[&Block], server: &Server, records: &Path) -> (String, Vec<Option<usize>>) {
    let prelude = format!(
        r#"set -euo pipefail
trap 'echo "FAILED AT $LINENO: $BASH_COMMAND" >&2' ERR
__rec='{records}'
echo 0 > "$__rec/n"
curl() {{
    local n rc=0 limit=(--max-time 10)
    n=$(( $(cat "$__rec/n") + 1 )); echo "$n" > "$__rec/n"
    printf '%s\n' "$*" > "$__rec/$n.args"
    case " $* " in *" -N "*) limit=(--max-time 1) ;; esac
    command curl "${{limit[@]}}" -w '%{{stderr}}%{{http_code}}' "$@" > "$__rec/$n.out" 2> "$__rec/$n.status" || rc=$?
    cat "$__rec/$n.out"
    if [ "$rc" = 28 ] && [ "${{limit[1]}}" = 1 ]; then rc=0; fi
    return "$rc"
}}
pidof() {{ if [ "$1" = rentabot ]; then echo {pid}; else command pidof "$@"; fi; }}
"#,
        records = records.display(),
        pid = server.child.id(),
    );
    let mut lines: Vec<Option<usize>> = vec![None; prelude.lines().count()];
    let mut script = prelude;
    for block in blocks {
        for (offset, line) in block.lines.iter().enumerate() {
            script.push_str(&line.replace("127.0.0.1:8000", &server.address));
            script.push('\n');
            lines.push(Some(block.line + offset));
        }
    }
    (script, lines)
}

/// `rentabot --config descriptors/example.yaml --port 0`, from the repository root, as
/// the Quick start runs it; killed when dropped.
struct Server {
    child: Child,
    address: String,
}

impl Server {
    fn start(root: &Path, persist: &str) -> Server {
        let (child, log) = support::spawn_logged(
            support::rentabot()
                .args(["--config", "descriptors/example.yaml", "--port", "0"])
                .args(["--persist", persist])
                .current_dir(root)
                .env("NO_COLOR", "1")
                .stderr(Stdio::inherit()),
        );
        let (address, _) = support::wait_until_listening(&log, PATIENCE);
        // Keep draining the log so that the server never blocks writing it.
        std::thread::spawn(move || while log.recv().is_ok() {});
        Server { child, address }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
