//! The workspace's layering rules, checked against `cargo metadata` output.
//!
//! Rules (see docs/architecture.md):
//! 1. the domain crate depends on no other workspace crate and, transitively, on no I/O crate;
//! 2. the ports crate depends on no workspace crate but the domain, and on no I/O crate, with one
//!    exception: tokio itself, declared directly without default features and with only the
//!    features in [`PORTS_TOKIO_FEATURES`] (scheduling and synchronisation, never I/O: the live
//!    stream's broadcast and its tasks);
//! 3. an adapter never depends on another adapter;
//! 4. only apps depend on adapters (apps are the composition roots); nothing depends on an app;
//! 5. the testkit is only ever a dev-dependency: no crate depends on it in `[dependencies]` or
//!    `[build-dependencies]`, so test support never ships.
//!
//! Rules 1–4 count normal dependencies only, and rule 5 normal and build dependencies:
//! dev-dependencies (e.g. an adapter running the testkit's conformance suites) do not shape the
//! shipped graph.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::Value;

/// Crates that perform or drive I/O. The domain may not reach any of them, even transitively.
pub const IO_CRATES: &[&str] = &[
    "tokio",
    "async-std",
    "mio",
    "actix-web",
    "actix-rt",
    "actix-http",
    "actix-ws",
    "hyper",
    "reqwest",
    "sea-orm",
    "sqlx",
    "sqlx-core",
    "sqlx-sqlite",
    "sqlx-postgres",
    "opendal",
    "redis",
    "fred",
    "tokio-tungstenite",
];

/// The tokio features the ports crate may enable: channels and locks, spawning, timers. None of
/// them opens a socket or a file.
pub const PORTS_TOKIO_FEATURES: &[&str] = &["sync", "rt", "time"];

/// Where a workspace crate sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    /// `domain/`
    Domain,
    /// `ports/`
    Ports,
    /// `adapters/*`
    Adapter,
    /// `apps/*`
    App,
    /// `testkit/`
    Testkit,
    /// Anything else (a violation in itself: the top level is fixed).
    Unknown,
}

fn layer_of(manifest_path: &str, workspace_root: &str) -> Layer {
    let rel = manifest_path
        .strip_prefix(workspace_root)
        .unwrap_or(manifest_path);
    let rel = rel.trim_start_matches('/');
    match rel.split('/').next() {
        Some("domain") => Layer::Domain,
        Some("ports") => Layer::Ports,
        Some("adapters") => Layer::Adapter,
        Some("apps") => Layer::App,
        Some("testkit") => Layer::Testkit,
        _ => Layer::Unknown,
    }
}

struct Package {
    name: String,
    layer: Layer,
    /// A normal dependency on tokio declared with no default features and only
    /// [`PORTS_TOKIO_FEATURES`].
    tokio_sync_only: bool,
}

fn declares_tokio_sync_only(pkg: &Value) -> bool {
    let mut tokio = pkg["dependencies"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|d| d["name"] == "tokio" && d["kind"].is_null())
        .peekable();
    tokio.peek().is_some()
        && tokio.all(|d| {
            d["uses_default_features"] == false
                && d["features"].as_array().is_some_and(|f| {
                    f.iter().all(|f| {
                        f.as_str()
                            .is_some_and(|f| PORTS_TOKIO_FEATURES.contains(&f))
                    })
                })
        })
}

/// Checks `cargo metadata --format-version 1` output; returns one message per violation.
pub fn check(metadata: &Value) -> Vec<String> {
    let mut violations = Vec::new();
    let root = metadata["workspace_root"].as_str().unwrap_or_default();
    let members: BTreeSet<&str> = metadata["workspace_members"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut packages: HashMap<&str, Package> = HashMap::new();
    let mut names: HashMap<&str, &str> = HashMap::new();
    for pkg in metadata["packages"].as_array().into_iter().flatten() {
        let (Some(id), Some(name)) = (pkg["id"].as_str(), pkg["name"].as_str()) else {
            continue;
        };
        names.insert(id, name);
        if members.contains(id) {
            let manifest = pkg["manifest_path"].as_str().unwrap_or_default();
            let layer = layer_of(manifest, root);
            if layer == Layer::Unknown {
                violations.push(format!(
                    "{name}: lives outside domain/ports/adapters/apps/testkit"
                ));
            }
            packages.insert(
                id,
                Package {
                    name: name.to_owned(),
                    layer,
                    tokio_sync_only: declares_tokio_sync_only(pkg),
                },
            );
        }
    }
    // Normal-dependency edges of every resolved package, and its build-dependencies.
    let mut edges: HashMap<&str, Vec<&str>> = HashMap::new();
    let mut build_edges: HashMap<&str, Vec<&str>> = HashMap::new();
    for node in metadata["resolve"]["nodes"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let Some(id) = node["id"].as_str() else {
            continue;
        };
        let of_kind = |kind: Option<&str>| {
            node["deps"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(move |d| {
                    d["dep_kinds"]
                        .as_array()
                        .is_some_and(|kinds| kinds.iter().any(|k| k["kind"].as_str() == kind))
                })
                .filter_map(|d| d["pkg"].as_str())
                .collect::<Vec<_>>()
        };
        edges.insert(id, of_kind(None));
        build_edges.insert(id, of_kind(Some("build")));
    }
    for (id, pkg) in &packages {
        let direct = edges.get(id).cloned().unwrap_or_default();
        for dep in &direct {
            let Some(target) = packages.get(dep) else {
                continue;
            };
            let allowed = match (pkg.layer, target.layer) {
                (Layer::Domain, _) => false,
                (Layer::Ports, Layer::Domain) => true,
                (Layer::Ports, _) => false,
                (_, Layer::App) => false,
                (Layer::Adapter, Layer::Adapter) => false,
                (Layer::App, _) => true,
                (_, Layer::Adapter) => false,
                _ => true,
            };
            if target.layer == Layer::Testkit {
                violations.push(testkit_outside_dev(pkg, target, "[dependencies]"));
            } else if !allowed {
                violations.push(format!(
                    "{} ({:?}) must not depend on {} ({:?})",
                    pkg.name, pkg.layer, target.name, target.layer
                ));
            }
        }
        for dep in build_edges.get(id).into_iter().flatten() {
            if let Some(target) = packages.get(dep)
                && target.layer == Layer::Testkit
            {
                violations.push(testkit_outside_dev(pkg, target, "[build-dependencies]"));
            }
        }
        if matches!(pkg.layer, Layer::Domain | Layer::Ports) {
            // The ports' own, feature-restricted tokio is allowed; tokio reached through any
            // other dependency is not (its features would be someone else's choice).
            let tokio_allowed = pkg.layer == Layer::Ports && pkg.tokio_sync_only;
            let mut reached = BTreeSet::new();
            for dep in &direct {
                let name = names.get(dep).copied().unwrap_or(dep);
                if tokio_allowed && name == "tokio" {
                    continue;
                }
                reached.insert(*dep);
                reached.extend(transitive(&edges, dep));
            }
            for reached in reached {
                let name = names.get(reached).copied().unwrap_or(reached);
                if IO_CRATES.contains(&name) {
                    violations.push(format!(
                        "{} ({:?}) reaches I/O crate {name}",
                        pkg.name, pkg.layer
                    ));
                }
            }
        }
    }
    violations.sort();
    violations
}

/// Rule 5's message: the testkit is test support, a dev-dependency only.
fn testkit_outside_dev(pkg: &Package, testkit: &Package, section: &str) -> String {
    format!(
        "{} ({:?}) must not depend on {} (Testkit) in {section}: only as a dev-dependency",
        pkg.name, pkg.layer, testkit.name
    )
}

fn transitive<'a>(edges: &HashMap<&'a str, Vec<&'a str>>, start: &'a str) -> BTreeSet<&'a str> {
    let mut seen = BTreeSet::new();
    let mut stack = vec![start];
    while let Some(id) = stack.pop() {
        for dep in edges.get(id).into_iter().flatten() {
            if seen.insert(*dep) {
                stack.push(dep);
            }
        }
    }
    seen
}

/// A circle in a module graph (its first module repeated at the end), if there is one: for tests
/// that check the modules of one crate, which Rust lets import each other in a circle.
pub fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}
