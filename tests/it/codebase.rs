//! Rules about the code itself that review alone would not keep: the server's modules form
//! no import cycle, a migration that shipped is never edited, and every route the server
//! registers is in its OpenAPI description.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::helpers::spawn_app;

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_owned()
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The server's top-level modules and which others each names (`crate::x`, `crate::{x, …}`).
/// `lib.rs` (AppState, the router) and the binary's `cli` and `main` are the handler layer's
/// root: every module may name `AppState`, and only they may name every module.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = repository().join("server/src");
    let module_of = |path: &Path| -> String {
        let relative = path.strip_prefix(&src).unwrap();
        let first = relative.components().next().unwrap().as_os_str();
        first.to_string_lossy().trim_end_matches(".rs").to_owned()
    };
    let files = rust_files(&src);
    let modules: BTreeSet<String> = files.iter().map(|path| module_of(path)).collect();
    let roots = ["lib", "main", "cli", "openapi"];
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for path in &files {
        let from = module_of(path);
        if roots.contains(&from.as_str()) {
            continue;
        }
        let text = std::fs::read_to_string(path).unwrap();
        let mut named = BTreeSet::new();
        for (index, _) in text.match_indices("crate::") {
            let rest = &text[index + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let group = &group[..group.find('}').unwrap_or(group.len())];
                for item in group.split(',') {
                    named.insert(item.trim().split("::").next().unwrap_or("").to_owned());
                }
            } else {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                named.insert(name);
            }
        }
        let edges = graph.entry(from.clone()).or_default();
        for name in named {
            if name != from && modules.contains(&name) && !roots.contains(&name.as_str()) {
                edges.insert(name);
            }
        }
    }
    graph
}

/// A cycle through `graph`, if there is one, as the modules along it.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        module: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|m| m == module) {
            let mut cycle = path[start..].to_vec();
            cycle.push(module.to_owned());
            return Some(cycle);
        }
        if done.contains(module) {
            return None;
        }
        path.push(module.to_owned());
        for next in graph.get(module).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(module.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|module| visit(module, graph, &mut Vec::new(), &mut done))
}

#[test]
fn the_server_modules_form_no_import_cycle() {
    let graph = module_graph();
    assert!(graph.len() > 15, "the graph was read: {graph:?}");
    assert!(graph["commit"].contains("records") && graph["commit"].contains("alerts"));
    if let Some(cycle) = find_cycle(&graph) {
        panic!("import cycle: {}", cycle.join(" -> "));
    }
    // The absences docs/ARCHITECTURE.md states.
    let absent = [
        ("records", "alerts"),
        ("records", "commit"),
        ("documents", "records"),
        ("db", "documents"),
        ("access", "auth"),
        ("audit", "commit"),
        ("outbox", "alerts"),
        ("push", "alerts"),
        ("alerts", "commit"),
        ("alerts", "documents"),
    ];
    for (from, to) in absent {
        assert!(
            !graph.get(from).is_some_and(|edges| edges.contains(to)),
            "`{from}` must know nothing of `{to}`"
        );
    }
    // Only `commit` spans the transaction of a change.
    for (module, edges) in &graph {
        if module != "commit" {
            assert!(
                !(edges.contains("documents")
                    && edges.contains("records")
                    && edges.contains("alerts")),
                "`{module}` spans documents, records and alerts: that is `commit`'s alone"
            );
        }
    }
}

#[test]
fn a_cycle_is_found_when_there_is_one() {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    graph.entry("a".into()).or_default().insert("b".into());
    graph.entry("b".into()).or_default().insert("c".into());
    assert_eq!(find_cycle(&graph), None);
    graph.entry("c".into()).or_default().insert("a".into());
    assert_eq!(
        find_cycle(&graph),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
}

/// `migrations/shipped.sha256` lists every migration that shipped with its SHA-256. Editing
/// one of them breaks every deployment that applied it; add a new migration instead.
#[test]
fn no_shipped_migration_is_edited() {
    let root = repository();
    let listed = std::fs::read_to_string(root.join("migrations/shipped.sha256")).unwrap();
    let mut shipped = BTreeMap::new();
    for line in listed.lines().filter(|line| !line.trim().is_empty()) {
        let (hash, path) = line.split_once("  ").expect("`<sha256>  <path>`");
        shipped.insert(path.to_owned(), hash.to_owned());
    }
    for backend in ["sqlite", "postgres"] {
        for entry in std::fs::read_dir(root.join("migrations").join(backend)).unwrap() {
            let path = entry.unwrap().path();
            let relative = format!(
                "migrations/{backend}/{}",
                path.file_name().unwrap().to_string_lossy()
            );
            let hash = hex::encode(Sha256::digest(std::fs::read(&path).unwrap()));
            match shipped.get(&relative) {
                Some(expected) => assert_eq!(
                    &hash, expected,
                    "{relative} shipped and was edited: add a new migration instead"
                ),
                None => panic!(
                    "{relative} is not in migrations/shipped.sha256: add `{hash}  {relative}`"
                ),
            }
        }
    }
}

/// Every `.route("…", method(…))` the server registers, as (path, method): the API's, not
/// the phone app's files (`web.rs`), which are no API.
fn registered_routes() -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    for path in rust_files(&repository().join("server/src")) {
        if path.ends_with("web.rs") {
            continue;
        }
        let text = std::fs::read_to_string(path).unwrap();
        for (index, _) in text.match_indices(".route(") {
            let rest = &text[index + ".route(".len()..];
            let mut depth = 1;
            let end = rest
                .char_indices()
                .find(|(_, c)| {
                    match c {
                        '(' => depth += 1,
                        ')' => depth -= 1,
                        _ => {}
                    }
                    depth == 0
                })
                .map_or(rest.len(), |(end, _)| end);
            let call = &rest[..end];
            let Some(start) = call.find('"') else {
                continue;
            };
            let literal = &call[start + 1..];
            let route = &literal[..literal.find('"').unwrap()];
            let handlers = &literal[literal.find('"').unwrap() + 1..];
            for method in ["get", "post", "put", "delete", "patch"] {
                let called = handlers.match_indices(method).any(|(at, _)| {
                    let before = handlers[..at].chars().last();
                    handlers[at + method.len()..].starts_with('(')
                        && !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
                });
                if called {
                    routes.insert((route.to_owned(), method.to_owned()));
                }
            }
        }
    }
    routes
}

#[tokio::test]
async fn every_route_is_in_the_openapi_description() {
    let app = spawn_app().await;
    let response = app
        .http
        .get(app.url("/api/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let openapi: serde_json::Value = response.json().await.unwrap();
    assert!(openapi["openapi"].as_str().unwrap().starts_with("3.1"));
    let routes = registered_routes();
    assert!(routes.len() > 25, "routes were read: {routes:?}");
    let mut missing = Vec::new();
    for (route, method) in &routes {
        if openapi["paths"][route][method].is_null() {
            missing.push(format!("{} {route}", method.to_uppercase()));
        }
    }
    assert!(missing.is_empty(), "not in /api/openapi.json: {missing:?}");
    // And the other way: every route described is served (a module whose routes were never
    // merged into the router would answer "no such route").
    let mut unserved = Vec::new();
    for (route, methods) in openapi["paths"].as_object().unwrap() {
        let path = route
            .split('/')
            .map(|part| if part.starts_with('{') { "x" } else { part })
            .collect::<Vec<_>>()
            .join("/");
        for method in methods.as_object().unwrap().keys() {
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let response = app
                .http
                .request(method.clone(), app.url(&path))
                .send()
                .await
                .unwrap();
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            if status == 404 && body.contains("no such route") || status == 405 {
                unserved.push(format!("{method} {route}: {status}"));
            }
        }
    }
    assert!(
        unserved.is_empty(),
        "described but not served: {unserved:?}"
    );
    // And the description names the shared types, not anonymous objects.
    for schema in [
        "IncidentView",
        "AlertView",
        "TokenResponse",
        "Step",
        "RecordStatus",
    ] {
        assert!(
            !openapi["components"]["schemas"][schema].is_null(),
            "{schema} missing"
        );
    }
}
