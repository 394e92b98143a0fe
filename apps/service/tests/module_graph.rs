//! The service's modules form no circle: each top-level module (a file, or a directory with its
//! children) names others through `crate::…` only downward. Read from the source text, since Rust
//! accepts circles between the modules of one crate.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use stratos_testkit::layering::find_cycle;

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Top-level module → the top-level modules it names.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src"));
    let mut files = Vec::new();
    sources(src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = top.trim_end_matches(".rs").to_owned();
        if module == "lib" || module == "main" {
            continue; // the crate root and the binary wire everything
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let deps = graph.entry(module.clone()).or_default();
        for (at, _) in text.match_indices("crate::") {
            let name: String = text[at + 7..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() && name != module {
                deps.insert(name);
            }
        }
    }
    graph
}

#[test]
fn the_service_modules_form_no_circle() {
    let graph = graph();
    assert!(graph.contains_key("state") && graph.contains_key("routes"));
    if let Some(cycle) = find_cycle(&graph) {
        panic!("module circle: {}", cycle.join(" → "));
    }
}

#[test]
fn the_checker_finds_a_circle() {
    let mut graph = graph();
    graph.get_mut("body").unwrap().insert("state".to_owned());
    let cycle = find_cycle(&graph).expect("state → body → state is a circle");
    assert!(cycle.contains(&"body".to_owned()) && cycle.contains(&"state".to_owned()));
}
