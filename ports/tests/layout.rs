//! The crate's layout rules, checked on its source (docs/decisions.md, "Layout of stratos-ports"):
//! use-case modules import each other downward only (no circle), port traits live in their own
//! modules at the crate root, and the use cases declare no port trait.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use stratos_testkit::layering::find_cycle;

const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");

/// Root modules that are not ports: glue over the ports, the use cases, their composition, and
/// serving them (authentication, XRPC).
const NOT_PORTS: &[&str] = &[
    "lib",
    "auth",
    "xrpc",
    "cause",
    "block_cache",
    "storage",
    "storage_codec",
    "storage_sql",
    "stratos",
    "usecases",
];

/// The one trait the use cases declare: the seam between the record use cases and the stream
/// hub, both in this crate (not a port to the outside world).
const USE_CASE_TRAITS: &[&str] = &["stream/mod.rs: EventSink"];

#[test]
fn use_case_modules_import_each_other_without_a_circle() {
    let graph = use_case_graph(&Path::new(SRC).join("usecases"));
    for expected in ["account", "writes", "reads", "blobs", "transfer", "records"] {
        assert!(graph.contains_key(expected), "no module {expected}");
    }
    if let Some(cycle) = find_cycle(&graph) {
        panic!(
            "use-case modules import each other in a circle: {}",
            cycle.join(" → ")
        );
    }
    // The shared context is the bottom of the record use cases.
    let below: Vec<&str> = graph["account"].iter().map(String::as_str).collect();
    assert!(
        below.iter().all(|m| ["node_cache", "stream"].contains(m)),
        "account imports {below:?}"
    );
    // Nothing below the facade reaches back up to it: only the entry points use it.
    for (module, deps) in &graph {
        if deps.contains("records") {
            assert!(
                ["enrollment", "legacy"].contains(&module.as_str()),
                "{module} imports the records facade"
            );
        }
    }
}

#[test]
fn the_circle_finder_finds_circles() {
    let graph = |edges: &[(&str, &str)]| {
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in edges {
            g.entry((*a).to_owned())
                .or_default()
                .insert((*b).to_owned());
            g.entry((*b).to_owned()).or_default();
        }
        g
    };
    assert_eq!(
        find_cycle(&graph(&[("writes", "blobs"), ("blobs", "account")])),
        None
    );
    let cycle = find_cycle(&graph(&[
        ("records", "writes"),
        ("writes", "blobs"),
        ("blobs", "records"),
    ]))
    .unwrap();
    assert_eq!(cycle.first(), cycle.last());
    assert_eq!(cycle.len(), 4, "{cycle:?}");
}

#[test]
fn imports_are_read_from_use_lines_and_paths() {
    let text = "use super::{UseCaseError, account::{A, b}, blobs};\n\
                // use super::records::Records;\n\
                fn f() { super::writes::x(); crate::usecases::reads::y(); }\n\
                #[cfg(test)]\nmod tests { use super::transfer; }\n";
    let known: BTreeSet<String> = ["account", "blobs", "writes", "reads", "records", "transfer"]
        .map(String::from)
        .into();
    let found = imports(text, false, &known);
    assert_eq!(
        found,
        ["account", "blobs", "reads", "writes"]
            .map(String::from)
            .into()
    );
}

#[test]
fn port_traits_live_at_the_crate_root_and_use_cases_declare_none() {
    let mut ports = 0;
    for file in rs_files(Path::new(SRC), false) {
        let name = file.file_stem().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&file).unwrap();
        if NOT_PORTS.contains(&name.as_str()) {
            continue;
        }
        assert!(
            text.lines().any(|l| l.starts_with("pub trait ")),
            "src/{name}.rs declares no port trait: a root module is one port (or belongs in \
             NOT_PORTS with a reason)"
        );
        ports += 1;
    }
    assert!(ports >= 7, "found {ports} port modules");
    let usecases = Path::new(SRC).join("usecases");
    let mut traits = Vec::new();
    for file in rs_files(&usecases, true) {
        let rel = file.strip_prefix(&usecases).unwrap().to_string_lossy();
        for line in std::fs::read_to_string(&file).unwrap().lines() {
            if let Some(rest) = line.trim_start().strip_prefix("pub trait ") {
                let name: String = rest.chars().take_while(|c| c.is_alphanumeric()).collect();
                traits.push(format!("{rel}: {name}"));
            }
        }
    }
    assert_eq!(
        traits, USE_CASE_TRAITS,
        "traits declared under src/usecases"
    );
}

/// `auth::READ_HEADERS` is true: every request header a library module looks up on a
/// `RequestView` is listed there, so an app that copies only those headers loses nothing. Calls
/// name a header by one of the constants or by a literal; response lookups (`res.header(…)`)
/// and `RequestView`'s own file are not request reads.
#[test]
fn the_library_reads_only_the_listed_request_headers() {
    let listed: BTreeSet<String> = stratos_ports::auth::READ_HEADERS
        .iter()
        .map(|h| h.to_string())
        .collect();
    let constants = [
        (
            "AUTHORIZATION_HEADER",
            stratos_ports::auth::AUTHORIZATION_HEADER,
        ),
        ("DPOP_HEADER", stratos_ports::auth::DPOP_HEADER),
    ];
    let mut unlisted = Vec::new();
    let mut seen = 0;
    for file in rs_files(Path::new(SRC), true) {
        if file.ends_with("auth/request.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        for call in [
            ".header(",
            ".header_text(",
            ".header_values(",
            ".has_header(",
        ] {
            for (at, _) in text.match_indices(call) {
                if text[..at].ends_with("res") {
                    continue;
                }
                let arg: String = text[at + call.len()..]
                    .trim_start()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || matches!(c, '_' | '"' | '-'))
                    .collect();
                let name = match constants.iter().find(|(c, _)| *c == arg) {
                    Some((_, value)) => value.to_string(),
                    None => arg.trim_matches('"').to_ascii_lowercase(),
                };
                seen += 1;
                if !listed.contains(&name) {
                    unlisted.push(format!("{}: {call}{arg}", file.display()));
                }
            }
        }
    }
    assert!(seen >= 3, "the scan found the known reads ({seen})");
    assert!(
        unlisted.is_empty(),
        "headers read but not in READ_HEADERS: {unlisted:?}"
    );
}

/// `.rs` files directly in `dir` (and in its subdirectories when `deep`), sorted.
fn rs_files(dir: &Path, deep: bool) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if deep {
                out.extend(rs_files(&path, true));
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// Module → the sibling use-case modules it imports. A directory module (`stream/`) is one
/// node with all its files.
fn use_case_graph(dir: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files: BTreeMap<String, Vec<(PathBuf, bool)>> = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            for file in rs_files(&path, true) {
                // In `stream/hub.rs`, `super::` is `stream` itself; in `stream/mod.rs` it is
                // `usecases`.
                let nested = file.file_name().is_some_and(|f| f != "mod.rs");
                files.entry(name.clone()).or_default().push((file, nested));
            }
        } else if name != "mod" && path.extension().is_some_and(|e| e == "rs") {
            files.entry(name).or_default().push((path, false));
        }
    }
    let known: BTreeSet<String> = files.keys().cloned().collect();
    files
        .into_iter()
        .map(|(module, files)| {
            let mut deps = BTreeSet::new();
            for (file, nested) in files {
                let text = std::fs::read_to_string(&file).unwrap();
                deps.extend(imports(&text, nested, &known));
            }
            deps.remove(&module);
            (module, deps)
        })
        .collect()
}

/// The use-case modules (`known`) a file's code names through `super::` (or `super::super::`
/// when `nested`) or `crate::usecases::`, in `use` lines and inline paths alike. Comments and
/// everything from the first `#[cfg(test)]` on are skipped.
fn imports(text: &str, nested: bool, known: &BTreeSet<String>) -> BTreeSet<String> {
    let code: String = text
        .lines()
        .take_while(|l| l.trim() != "#[cfg(test)]")
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let parent = if nested { "super::super::" } else { "super::" };
    let code = code.replace(parent, "crate::usecases::");
    let prefix = "crate::usecases::";
    let mut out = BTreeSet::new();
    for (at, _) in code.match_indices(prefix) {
        let rest = &code[at + prefix.len()..];
        let names: Vec<&str> = if let Some(group) = rest.strip_prefix('{') {
            top_level_items(group)
        } else {
            vec![rest]
        };
        for item in names {
            let name: String = item
                .trim_start()
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if known.contains(&name) {
                out.insert(name);
            }
        }
    }
    out
}

/// The comma-separated items of a `{…}` group (its opening brace already consumed), nested
/// groups kept whole.
fn top_level_items(group: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                items.push(&group[start..i]);
                return items;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&group[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items
}
