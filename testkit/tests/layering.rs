//! Enforces the architecture's layering rules on the real workspace, and proves the checker
//! catches each kind of violation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use serde_json::{Value, json};
use stratos_testkit::layering::check;

fn workspace_metadata() -> Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
    let out = std::process::Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--manifest-path",
            manifest,
        ])
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("metadata is JSON")
}

#[test]
fn workspace_respects_the_layering_rules() {
    let metadata = workspace_metadata();
    let members = metadata["workspace_members"].as_array().unwrap().len();
    assert!(
        members >= 3,
        "expected the workspace crates, found {members}"
    );
    let violations = check(&metadata);
    assert!(
        violations.is_empty(),
        "layering violations:\n{}",
        violations.join("\n")
    );
}

/// A synthetic workspace: `crates` are (name, dir, normal deps); `external` names third-party
/// crates that can be depended on.
fn synthetic(crates: &[(&str, &str, &[&str])], external: &[&str]) -> Value {
    let mut packages = Vec::new();
    let mut members = Vec::new();
    let mut nodes = Vec::new();
    for (name, dir, deps) in crates {
        let id = format!("{name}-id");
        members.push(json!(id));
        packages.push(
            json!({"id": id, "name": name, "manifest_path": format!("/ws/{dir}/Cargo.toml")}),
        );
        let deps: Vec<Value> = deps
            .iter()
            .map(|d| json!({"pkg": format!("{d}-id"), "dep_kinds": [{"kind": null}]}))
            .collect();
        nodes.push(json!({"id": id, "deps": deps}));
    }
    for name in external {
        packages.push(json!({"id": format!("{name}-id"), "name": name, "manifest_path": "/reg/x"}));
        nodes.push(json!({"id": format!("{name}-id"), "deps": []}));
    }
    json!({"workspace_root": "/ws", "workspace_members": members, "packages": packages,
           "resolve": {"nodes": nodes}})
}

#[test]
fn checker_accepts_a_clean_graph() {
    let m = synthetic(
        &[
            ("d", "domain", &["serde"]),
            ("p", "ports", &["d"]),
            ("a1", "adapters/sqlite", &["p", "d", "tokio"]),
            ("app", "apps/service", &["a1", "p", "d", "tokio"]),
            ("t", "testkit", &["p", "d"]),
        ],
        &["serde", "tokio"],
    );
    assert_eq!(check(&m), Vec::<String>::new());
}

#[test]
fn checker_catches_each_violation() {
    type Crates<'a> = &'a [(&'a str, &'a str, &'a [&'a str])];
    let cases: &[(Crates, &str)] = &[
        (
            &[("d", "domain", &["mid"]), ("mid2", "testkit", &[])],
            "reaches I/O crate tokio",
        ),
        (
            &[
                ("d", "domain", &[]),
                ("p", "ports", &["d", "t"]),
                ("t", "testkit", &[]),
            ],
            "p (Ports) must not depend on t",
        ),
        (
            &[("a1", "adapters/x", &["a2"]), ("a2", "adapters/y", &[])],
            "a1 (Adapter) must not depend on a2",
        ),
        (
            &[("t", "testkit", &["a2"]), ("a2", "adapters/y", &[])],
            "t (Testkit) must not depend on a2",
        ),
        (
            &[("a2", "adapters/y", &["app"]), ("app", "apps/s", &[])],
            "must not depend on app (App)",
        ),
        (
            &[("app", "apps/s", &["t"]), ("t", "testkit", &[])],
            "app (App) must not depend on t (Testkit) in [dependencies]",
        ),
        (&[("p", "ports", &["reqwest"])], "reaches I/O crate reqwest"),
        (&[("x", "misc", &[])], "lives outside"),
    ];
    for (crates, expected) in cases {
        // `mid` is an external crate that pulls in tokio, to prove transitivity is checked.
        let mut m = synthetic(crates, &["tokio", "reqwest", "mid"]);
        for node in m["resolve"]["nodes"].as_array_mut().unwrap() {
            if node["id"] == "mid-id" {
                node["deps"] = json!([{"pkg": "tokio-id", "dep_kinds": [{"kind": null}]}]);
            }
        }
        let violations = check(&m);
        assert!(
            violations.iter().any(|v| v.contains(expected)),
            "expected a violation containing {expected:?}, got {violations:?}"
        );
    }
}

#[test]
fn dev_dependencies_do_not_count() {
    let mut m = synthetic(&[("a1", "adapters/x", &[]), ("t", "testkit", &[])], &[]);
    for node in m["resolve"]["nodes"].as_array_mut().unwrap() {
        if node["id"] == "a1-id" {
            node["deps"] = json!([{"pkg": "t-id", "dep_kinds": [{"kind": "dev"}]}]);
        }
    }
    assert_eq!(check(&m), Vec::<String>::new());
}

/// Rule 5: whoever depends on the testkit in `[dependencies]` or `[build-dependencies]` is
/// refused, an app included; a dev-dependency (alone) is fine.
#[test]
fn a_non_dev_dependency_on_the_testkit_is_refused() {
    let with_kinds = |dir: &str, kinds: Value| {
        let mut m = synthetic(&[("c", dir, &[]), ("t", "testkit", &[])], &[]);
        for node in m["resolve"]["nodes"].as_array_mut().unwrap() {
            if node["id"] == "c-id" {
                node["deps"] = json!([{"pkg": "t-id", "dep_kinds": kinds.clone()}]);
            }
        }
        check(&m)
    };
    for dir in ["adapters/x", "apps/s", "ports"] {
        for (kinds, section) in [
            (json!([{"kind": null}]), "[dependencies]"),
            (json!([{"kind": "build"}]), "[build-dependencies]"),
            (json!([{"kind": "dev"}, {"kind": null}]), "[dependencies]"),
        ] {
            let violations = with_kinds(dir, kinds.clone());
            assert!(
                violations
                    .iter()
                    .any(|v| v.contains("must not depend on t (Testkit)")
                        && v.contains(section)
                        && v.contains("only as a dev-dependency")),
                "{dir} with {kinds}: expected the testkit rule, got {violations:?}"
            );
        }
        let violations = with_kinds(dir, json!([{"kind": "dev"}]));
        assert!(
            violations.iter().all(|v| !v.contains("Testkit")),
            "{dir}: a dev-dependency on the testkit is fine, got {violations:?}"
        );
    }
}

/// Ports (only) may use tokio for scheduling and synchronisation: declared directly, without
/// default features, with features from `PORTS_TOKIO_FEATURES`; anything else reaching tokio
/// is still a violation.
#[test]
fn ports_may_use_tokio_for_sync_only() {
    let graph = |layer: &str, via: &str, default: bool, features: &[&str]| {
        let mut m = synthetic(
            &[("d", "domain", &[]), ("p", layer, &["d", via])],
            &["tokio", "mid"],
        );
        for node in m["resolve"]["nodes"].as_array_mut().unwrap() {
            if node["id"] == "mid-id" {
                node["deps"] = json!([{"pkg": "tokio-id", "dep_kinds": [{"kind": null}]}]);
            }
        }
        for pkg in m["packages"].as_array_mut().unwrap() {
            if pkg["id"] == "p-id" {
                pkg["dependencies"] = json!([{"name": via, "kind": null,
                    "uses_default_features": default, "features": features}]);
            }
        }
        check(&m)
    };
    assert_eq!(
        graph("ports", "tokio", false, &["sync", "rt", "time"]),
        Vec::<String>::new()
    );
    for (layer, via, default, features) in [
        ("ports", "tokio", false, &["sync", "net"][..]),
        ("ports", "tokio", true, &["sync"][..]),
        ("ports", "mid", false, &[][..]),
        ("domain", "tokio", false, &["sync"][..]),
    ] {
        let v = graph(layer, via, default, features);
        assert!(
            v.iter().any(|v| v.contains("reaches I/O crate tokio")),
            "{layer} via {via} (default {default}, {features:?}): {v:?}"
        );
    }
}
