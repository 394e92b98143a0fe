#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! The quick start (docs/quickstart.md) and the first-post guide (docs/first-post.md) are run
//! as written, and their outputs are checked.
//!
//! The convention the two pages follow (checked here, so a page cannot drift from it):
//!
//! - every ```` ```sh ```` block is a command block, run in order; a fence tagged `bash`,
//!   `shell`, `console` or `zsh` is refused, so no command escapes the test;
//! - the first command block of a page starts the service (`… scripts/run`) and is the only one
//!   that does; it is run in the background, and the others wait for `/health`;
//! - every other command block is followed by a ```` ```json output ```` or
//!   ```` ```text output ```` block, its expected stdout: text compared line by line, JSON
//!   value by value (keys and lengths exact); `…` stands for any run of characters (a whole
//!   JSON string `"…"` for any value);
//! - the other command blocks run in one `bash` process per page (`set -euo pipefail`), from
//!   the checkout's root, so variables carry from block to block and any failing command fails
//!   the page.
//!
//! Isolation: the pages talk to `localhost:3100` as `did:web:localhost%3A3100`; this test picks
//! a free port and rewrites those strings (and nothing else) in commands and outputs before
//! running them, and refuses a page whose commands still mention 3100 afterwards, so nothing
//! reaches a service the developer runs. The start block runs from a temporary directory that
//! stands for a fresh checkout — a copy of `scripts/run`, no `.env`, no `./data` — with
//! `STRATOS_BIN` pointing `scripts/run` at the binary under test (instead of `cargo run
//! --release`), `STRATOS_PORT` set to the chosen port and `STRATOS_DATA_DIR` in the temporary
//! directory. Every process runs with a cleared environment (only `PATH`, `HOME` and the
//! toolchain's variables pass) and is killed, with its process group, when the test ends. A
//! page's `cargo run -q -p PACKAGE --example NAME` runs the example binary the workspace's test
//! build made (see `cargo_shim`).

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read as _, Write as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_stratos");
/// The port the pages are written for.
const DOC_PORT: &str = "3100";
/// How long one page's commands may take: the first-post guide compiles a client example the
/// first time.
const PAGE_TIMEOUT: Duration = Duration::from_secs(20 * 60);
/// Marks the start of a block's output in the page script's stdout.
const MARK: &str = "@@docs-commands-block-";

fn checkout() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// ---- the page ------------------------------------------------------------------------------

/// What an expected output is compared as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Text,
    Json,
}

/// One command block, with the line of its fence and its expected output.
#[derive(Debug, Clone)]
struct Step {
    line: usize,
    command: String,
    expected: Option<(Format, String)>,
}

/// The page's start block and its other command blocks.
#[derive(Debug)]
struct Page {
    start: Step,
    steps: Vec<Step>,
}

/// Parses a page by the convention above; any departure from it panics, naming the line.
fn parse_page(name: &str, markdown: &str) -> Page {
    let mut steps: Vec<Step> = Vec::new();
    let mut lines = markdown.lines().enumerate();
    while let Some((n, line)) = lines.next() {
        let Some(info) = line.strip_prefix("```") else {
            continue;
        };
        let mut body = String::new();
        loop {
            let (_, l) = lines
                .next()
                .unwrap_or_else(|| panic!("{name}:{}: unclosed fence", n + 1));
            if l.trim_end() == "```" {
                break;
            }
            body.push_str(l);
            body.push('\n');
        }
        let words: Vec<&str> = info.split_whitespace().collect();
        match words.as_slice() {
            ["sh"] => steps.push(Step {
                line: n + 1,
                command: body,
                expected: None,
            }),
            [lang, "output"] => {
                let format = match *lang {
                    "json" => Format::Json,
                    "text" => Format::Text,
                    _ => panic!(
                        "{name}:{}: outputs are `json output` or `text output`",
                        n + 1
                    ),
                };
                let last = steps
                    .last_mut()
                    .filter(|s| s.expected.is_none())
                    .unwrap_or_else(|| {
                        panic!("{name}:{}: an output block follows no command", n + 1)
                    });
                last.expected = Some((format, body));
            }
            [first, ..] if ["sh", "bash", "shell", "console", "zsh"].contains(first) => {
                panic!("{name}:{}: commands are ```sh blocks, alone", n + 1)
            }
            _ => {}
        }
    }
    assert!(!steps.is_empty(), "{name}: no command");
    let start = steps.remove(0);
    assert!(
        start.command.contains("scripts/run") && start.expected.is_none(),
        "{name}:{}: the first command block starts the service (scripts/run), without output",
        start.line
    );
    for step in &steps {
        assert!(
            !step.command.contains("scripts/run"),
            "{name}:{}: only the first command block starts the service",
            step.line
        );
        assert!(
            step.expected.is_some(),
            "{name}:{}: every command block but the start shows its output",
            step.line
        );
    }
    Page { start, steps }
}

/// The page's `localhost:3100` and `did:web:localhost%3A3100` moved to `port`.
fn localize(text: &str, port: u16) -> String {
    text.replace(
        &format!("localhost:{DOC_PORT}"),
        &format!("localhost:{port}"),
    )
    .replace(
        &format!("localhost%3A{DOC_PORT}"),
        &format!("localhost%3A{port}"),
    )
}

/// Whether `text` mentions the port other than as the rewritten `localhost:3100` forms: such a
/// command could reach a service the developer runs.
fn unrewritten(text: &str) -> bool {
    localize(text, 0).contains(DOC_PORT)
}

// ---- comparing outputs ---------------------------------------------------------------------

/// `text` matches `pattern`, in which `…` stands for any run of characters.
fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('…').collect();
    let [first, middle @ .., last] = parts.as_slice() else {
        return pattern == text;
    };
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    for part in middle {
        let Some(at) = rest.find(part) else {
            return false;
        };
        rest = &rest[at + part.len()..];
    }
    rest.ends_with(last)
}

/// Lines without trailing whitespace, without leading or trailing blank lines.
fn normalize(text: &str) -> String {
    let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
    lines.join("\n").trim_matches('\n').to_owned()
}

/// Why `actual` does not match `expected` (a JSON value whose strings may hold `…`), if it
/// does not.
fn json_mismatch(expected: &Value, actual: &Value, at: &str) -> Option<String> {
    match (expected, actual) {
        (Value::String(e), _) if e == "…" => None,
        (Value::String(e), Value::String(a)) if e.contains('…') => {
            (!glob(e, a)).then(|| format!("{at}: {a:?} does not match {e:?}"))
        }
        (Value::Object(e), Value::Object(a)) => {
            let (ek, ak): (BTreeSet<_>, BTreeSet<_>) = (e.keys().collect(), a.keys().collect());
            if ek != ak {
                return Some(format!("{at}: keys {ak:?}, expected {ek:?}"));
            }
            e.iter()
                .find_map(|(k, v)| json_mismatch(v, &a[k], &format!("{at}.{k}")))
        }
        (Value::Array(e), Value::Array(a)) => {
            if e.len() != a.len() {
                return Some(format!("{at}: {} items, expected {}", a.len(), e.len()));
            }
            e.iter()
                .zip(a)
                .enumerate()
                .find_map(|(i, (e, a))| json_mismatch(e, a, &format!("{at}[{i}]")))
        }
        (e, a) => (e != a).then(|| format!("{at}: {a}, expected {e}")),
    }
}

/// A sequence of JSON values (one per answer), or why not.
fn json_values(text: &str) -> Result<Vec<Value>, String> {
    serde_json::Deserializer::from_str(text)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .map_err(|e| format!("not a sequence of JSON values: {e}"))
}

/// Why the output `actual` does not match the expected one, if it does not.
fn mismatch(format: Format, expected: &str, actual: &str) -> Option<String> {
    match format {
        Format::Text => {
            let (e, a) = (normalize(expected), normalize(actual));
            (!glob(&e, &a)).then(|| "the text differs".to_owned())
        }
        Format::Json => {
            let expected = match json_values(expected) {
                Ok(v) => v,
                Err(e) => return Some(format!("the expected output is {e}")),
            };
            let actual = match json_values(actual) {
                Ok(v) => v,
                Err(e) => return Some(format!("the output is {e}")),
            };
            if expected.len() != actual.len() {
                return Some(format!(
                    "{} JSON values, expected {}",
                    actual.len(),
                    expected.len()
                ));
            }
            expected
                .iter()
                .zip(&actual)
                .enumerate()
                .find_map(|(i, (e, a))| json_mismatch(e, a, &format!("value {}", i + 1)))
        }
    }
}

// ---- processes -----------------------------------------------------------------------------

/// A process leading its own process group, killed with the group when dropped.
struct Group(Child);

impl Group {
    fn spawn(cmd: &mut Command) -> Self {
        Self(cmd.process_group(0).spawn().unwrap())
    }

    fn kill(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `PATH`, `HOME` and the toolchain's variables: what a shell on the machine would have for
/// these commands, and nothing of the developer's `STRATOS_*` settings.
fn base_env<'a>(cmd: &'a mut Command, tmp: &Path) -> &'a mut Command {
    cmd.env_clear().env("TMPDIR", tmp);
    let path = std::env::var("PATH").unwrap_or_default();
    cmd.env(
        "PATH",
        format!("{}:{path}", cargo_shim(tmp, &path).display()),
    );
    for name in [
        "HOME",
        "CARGO_HOME",
        "RUSTUP_HOME",
        "RUSTUP_TOOLCHAIN",
        "CARGO_TARGET_DIR",
    ] {
        if let Some(value) = std::env::var_os(name) {
            cmd.env(name, value);
        }
    }
    cmd
}

/// A directory holding a `cargo` that runs `cargo run -q -p PACKAGE --example NAME [-- ARGS]`
/// as the example binary the workspace's test build already made (target/debug/examples, beside
/// the binary under test), and anything else, or an example not built, with the real cargo. A
/// page's `cargo run -p` would otherwise compile much of the workspace again, with that package's
/// features alone, inside this test. The example is the same program from the same sources;
/// only its build is skipped.
fn cargo_shim(tmp: &Path, path: &str) -> PathBuf {
    let dir = tmp.join("cargo-shim");
    fs::create_dir_all(&dir).unwrap();
    let examples = Path::new(BIN).parent().unwrap().join("examples");
    let script = format!(
        r#"#!/bin/sh
if [ "$1" = run ] && [ "$2" = -q ] && [ "$3" = -p ] && [ "$5" = --example ] \
  && [ -x "{examples}/$6" ]; then
  name="$6"
  shift 6
  [ "${{1:-}}" = "--" ] && shift
  exec "{examples}/$name" "$@"
fi
PATH='{path}' exec cargo "$@"
"#,
        examples = examples.display(),
    );
    let shim = dir.join("cargo");
    fs::write(&shim, script).unwrap();
    let mut perms = fs::metadata(&shim).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    fs::set_permissions(&shim, perms).unwrap();
    dir
}

/// The status line of `GET /health`, if the service answers.
fn health(port: u16) -> Option<String> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    answer.lines().next().map(str::to_owned)
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Runs the page `doc` (a path under docs/) as the module documentation says.
fn run_page(doc: &str) {
    let root = checkout();
    let name = format!("docs/{doc}");
    let page = parse_page(&name, &fs::read_to_string(root.join(&name)).unwrap());
    let port = free_port();
    let tmp = tempfile::tempdir().unwrap();
    let scratch = tmp.path().join("tmp");
    fs::create_dir(&scratch).unwrap();

    // The service, from a fresh "checkout" holding only scripts/run.
    let fresh = tmp.path().join("checkout");
    fs::create_dir_all(fresh.join("scripts")).unwrap();
    fs::copy(root.join("scripts/run"), fresh.join("scripts/run")).unwrap();
    assert!(
        !unrewritten(&page.start.command),
        "{name}:{}: {DOC_PORT} outside `localhost:{DOC_PORT}`",
        page.start.line
    );
    let start = localize(&page.start.command, port);
    let service_log = tmp.path().join("service.log");
    let log = fs::File::create(&service_log).unwrap();
    let mut service = Group::spawn(
        base_env(&mut Command::new("bash"), &scratch)
            .arg("-c")
            .arg(format!("set -euo pipefail\n{start}"))
            .current_dir(&fresh)
            .env("STRATOS_BIN", BIN)
            .env("STRATOS_PORT", port.to_string())
            .env("STRATOS_DATA_DIR", tmp.path().join("data"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if health(port).is_some_and(|s| s.starts_with("HTTP/1.1 200")) {
            break;
        }
        if let Some(status) = service.0.try_wait().unwrap() {
            panic!(
                "{name}:{}: the service exited ({status}):\n{}",
                page.start.line,
                read(&service_log)
            );
        }
        assert!(
            Instant::now() < deadline,
            "{name}: no healthy service on port {port} after 60 s:\n{}",
            read(&service_log)
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // The other blocks, in one shell, each output after its marker.
    let mut script = String::from("set -euo pipefail\n");
    let mut steps = Vec::new();
    for (i, step) in page.steps.iter().enumerate() {
        assert!(
            !unrewritten(&step.command),
            "{name}:{}: {DOC_PORT} outside `localhost:{DOC_PORT}`",
            step.line
        );
        let command = localize(&step.command, port);
        script.push_str(&format!("printf '\\n{MARK}{i}\\n'\n{command}"));
        let (format, expected) = step.expected.clone().unwrap();
        steps.push((step.line, command, format, localize(&expected, port)));
    }
    script.push_str(&format!("printf '\\n{MARK}end\\n'\n"));
    let (out_path, err_path) = (tmp.path().join("stdout"), tmp.path().join("stderr"));
    let started = Instant::now();
    let mut shell = Group::spawn(
        base_env(&mut Command::new("bash"), &scratch)
            .arg("-c")
            .arg(&script)
            .current_dir(&root)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&out_path).unwrap())
            .stderr(fs::File::create(&err_path).unwrap()),
    );
    let status = loop {
        if let Some(status) = shell.0.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > PAGE_TIMEOUT {
            shell.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (stdout, stderr) = (read(&out_path), read(&err_path));

    // Each block's stdout: the lines after its marker, up to the next one.
    let mut outputs: Vec<String> = Vec::new();
    let mut ended = false;
    for line in stdout.lines() {
        if let Some(marker) = line.strip_prefix(MARK) {
            ended = marker == "end";
            if !ended {
                outputs.push(String::new());
            }
        } else if let Some(current) = outputs.last_mut() {
            current.push_str(line);
            current.push('\n');
        }
    }
    let context = |what: &str| {
        format!(
            "{what}\n--- stderr (last lines):\n{}\n--- service log (last lines):\n{}",
            tail(&stderr, 30),
            tail(&read(&service_log), 30)
        )
    };
    let finished = ended && status.is_some_and(|s| s.success());
    // The first wrong output explains more than where the commands stopped, so it comes first:
    // every block that finished is compared (all of them when the page ran through).
    let complete = if finished {
        outputs.len()
    } else {
        outputs.len().saturating_sub(1)
    };
    for ((line, command, format, expected), actual) in steps.iter().zip(&outputs).take(complete) {
        if let Some(why) = mismatch(*format, expected, actual) {
            panic!(
                "{}",
                context(&format!(
                    "{name}:{line}: {why}\n--- command:\n{command}--- expected:\n{expected}--- output:\n{actual}"
                ))
            );
        }
    }
    if !finished {
        let (line, command) = steps
            .get(complete)
            .map_or((0, ""), |(line, command, ..)| (*line, command.as_str()));
        panic!(
            "{}",
            context(&format!(
                "{name}:{line}: the commands stopped here ({}):\n{command}\n--- its output:\n{}",
                status.map_or("timed out".to_owned(), |s| s.to_string()),
                outputs.last().map(String::as_str).unwrap_or_default()
            ))
        );
    }
    assert_eq!(outputs.len(), steps.len());
    drop(service);
}

// ---- the tests -----------------------------------------------------------------------------

#[test]
fn the_quick_start_runs_as_written() {
    run_page("quickstart.md");
}

#[test]
fn the_first_post_guide_runs_as_written() {
    run_page("first-post.md");
}

/// The comparison itself: a wrong answer is caught (a test that cannot fail proves nothing).
#[test]
fn outputs_that_differ_are_caught() {
    assert!(glob("a…c", "abbbc") && glob("a…b…a", "aba") && glob("…", "") && glob("x", "x"));
    assert!(!glob("a…c", "abbb") && !glob("a…a", "a") && !glob("x", "y"));
    let text = "{\"error\":\"RecordNotFound\"} HTTP 400\n";
    assert_eq!(mismatch(Format::Text, "{\"error\":…} HTTP 400", text), None);
    assert!(mismatch(Format::Text, "{\"error\":…} HTTP 200", text).is_some());
    let expected = r#"{"a": "bafy…", "b": [1, "…"]} {"c": true}"#;
    assert_eq!(
        mismatch(
            Format::Json,
            expected,
            r#"{"a":"bafyx","b":[1,{}]}{"c":true}"#
        ),
        None
    );
    for wrong in [
        r#"{"a":"bafyx","b":[1,{}]}"#,                    // a value missing
        r#"{"a":"bafyx","b":[1,{}],"d":0}{"c":true}"#,    // a key too many
        r#"{"a":"cid","b":[1,{}]}{"c":true}"#,            // a pattern not matched
        r#"{"a":"bafyx","b":[1]}{"c":true}"#,             // an item missing
        r#"{"a":"bafyx","b":[1,{}]}{"c":false}"#,         // another value
        r#"{"a":"bafyx","b":[1,{}]}{"c":true} trailing"#, // not JSON
    ] {
        assert!(mismatch(Format::Json, expected, wrong).is_some(), "{wrong}");
    }
    let page = parse_page(
        "t.md",
        "```sh\nscripts/run\n```\n```sh\necho 1\n```\ntext\n```text output\n1\n```\n",
    );
    assert_eq!(page.steps[0].expected, Some((Format::Text, "1\n".into())));
    assert_eq!(
        localize("curl localhost:3100 did:web:localhost%3A3100", 4000),
        "curl localhost:4000 did:web:localhost%3A4000"
    );
    assert!(!unrewritten("curl localhost:3100/health"));
    assert!(unrewritten("curl 127.0.0.1:3100/health"));
}

/// The documentation set is linked from the README and the introduction, and the relative
/// links of the new pages (anchors included) lead somewhere.
#[test]
fn the_new_pages_are_linked_and_their_links_resolve() {
    let root = checkout();
    let pages = [
        "introduction.md",
        "quickstart.md",
        "first-post.md",
        "integration.md",
        "glossary.md",
    ];
    let readme = fs::read_to_string(root.join("README.md")).unwrap();
    let intro = fs::read_to_string(root.join("docs/introduction.md")).unwrap();
    for page in pages {
        assert!(readme.contains(&format!("(docs/{page})")), "README: {page}");
        if page != "introduction.md" {
            assert!(intro.contains(&format!("({page})")), "introduction: {page}");
        }
    }
    let mut checked = 0;
    for (file, dir) in pages
        .iter()
        .map(|p| (root.join("docs").join(p), root.join("docs")))
        .chain([(root.join("README.md"), root.clone())])
    {
        let text = fs::read_to_string(&file).unwrap();
        for target in text.split("](").skip(1).filter_map(|s| s.split(')').next()) {
            if target.contains("://") || target.starts_with('#') {
                continue;
            }
            let (path, anchor) = target.split_once('#').unwrap_or((target, ""));
            let linked = dir.join(path);
            assert!(
                linked.exists(),
                "{}: {target} does not exist",
                file.display()
            );
            if !anchor.is_empty() {
                let headings = fs::read_to_string(&linked).unwrap();
                assert!(
                    headings
                        .lines()
                        .filter(|l| l.starts_with('#'))
                        .any(|l| slug(l.trim_start_matches('#').trim()) == anchor),
                    "{}: no heading #{anchor} in {path}",
                    file.display()
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 20, "{checked} links");
}

/// A heading's anchor as GitHub makes it.
fn slug(heading: &str) -> String {
    heading
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}
