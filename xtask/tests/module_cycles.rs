//! A lint over the workspace: no crate has a cycle among its top-level modules.
//!
//! A module depends on another when its files name it (`crate::other`, or
//! `use crate::{other, ...}`); a module's submodules count as the module. Shared vocabulary
//! belongs in a module of its own that the features use, so that each feature can be read,
//! tested and changed without the others.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use support::{rust_files, workspace_root};

/// A crate's top-level modules and the modules each one names.
type Graph = BTreeMap<String, BTreeSet<String>>;

#[test]
fn no_crate_has_a_module_cycle() {
    let root = workspace_root();
    let mut crates: Vec<PathBuf> = std::fs::read_dir(root.join("crates"))
        .expect("crates/")
        .map(|entry| entry.expect("entry").path())
        .collect();
    crates.push(root.join("xtask"));
    let mut cycles = Vec::new();
    let mut modules = 0;
    for dir in crates {
        let graph = module_graph(&dir.join("src"));
        modules += graph.len();
        if let Some(cycle) = find_cycle(&graph) {
            cycles.push(format!("{}: {}", dir.display(), cycle.join(" -> ")));
        }
    }
    assert!(modules > 50, "found only {modules} modules");
    assert!(cycles.is_empty(), "module cycles:\n{}", cycles.join("\n"));
}

#[test]
fn the_lint_finds_cycles_and_only_cycles() {
    let graph = |edges: &[(&str, &str)]| -> Graph {
        let mut graph = Graph::new();
        for (from, to) in edges {
            graph
                .entry((*from).to_owned())
                .or_default()
                .insert((*to).to_owned());
            graph.entry((*to).to_owned()).or_default();
        }
        graph
    };
    assert_eq!(
        find_cycle(&graph(&[("a", "b"), ("b", "c"), ("a", "c")])),
        None
    );
    let cycle = find_cycle(&graph(&[("a", "b"), ("b", "c"), ("c", "a")])).expect("a cycle");
    assert_eq!(cycle.first(), cycle.last());
    assert_eq!(cycle.len(), 4);
    assert_eq!(
        named_modules(
            "use crate::{context::Context, error::{Error, MANAGER}};\nx = crate::summary::add;"
        ),
        BTreeSet::from([
            "context".to_owned(),
            "error".to_owned(),
            "summary".to_owned()
        ])
    );
}

/// The top-level modules of the crate whose sources are in `src`, with the modules they name.
/// A crate with a library has `lib.rs` as its root: `main.rs` and `bin/` are other crates.
fn module_graph(src: &Path) -> Graph {
    let has_lib = src.join("lib.rs").exists();
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut graph = Graph::new();
    for file in files {
        let relative = file.strip_prefix(src).unwrap_or(&file);
        let first = relative
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .unwrap_or_default();
        if first == "bin" || (has_lib && first == "main.rs") {
            continue;
        }
        let module = first.trim_end_matches(".rs").to_owned();
        if module == "lib" || module == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("read");
        let named = named_modules(&text);
        let entry = graph.entry(module.clone()).or_default();
        entry.extend(named.into_iter().filter(|n| *n != module));
    }
    graph
}

/// The top-level modules `text` names through `crate::`.
fn named_modules(text: &str) -> BTreeSet<String> {
    let mut named = BTreeSet::new();
    for (index, _) in text.match_indices("crate::") {
        let before = text[..index].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // `fleet_crate::`, not `crate::`
        }
        let rest = &text[index + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a::X, b, c::{D, E}}`: the first segment of each top-level item.
            for item in top_level_items(group) {
                named.insert(item);
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                named.insert(name);
            }
        }
    }
    named
}

/// The first path segment of each item of a `use` group (`a::X, b, c::{D, E}}...`).
fn top_level_items(group: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut depth = 0;
    let mut current = String::new();
    let mut collecting = true;
    for c in group.chars() {
        match c {
            '{' => {
                depth += 1;
                collecting = false;
            }
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                if !current.is_empty() {
                    items.push(std::mem::take(&mut current));
                }
                collecting = true;
            }
            c if depth == 0 && collecting && (c.is_alphanumeric() || c == '_') => current.push(c),
            c if depth == 0 && !c.is_whitespace() => collecting = false,
            _ => {}
        }
    }
    if !current.is_empty() {
        items.push(current);
    }
    items
}

/// A cycle of `graph` (its first module repeated at the end), if it has one.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    fn visit(
        module: &str,
        graph: &Graph,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match marks.get(module) {
            Some(Mark::Done) => return None,
            Some(Mark::Visiting) => {
                let start = path.iter().position(|m| m == module).unwrap_or(0);
                let mut cycle = path[start..].to_vec();
                cycle.push(module.to_owned());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(module.to_owned(), Mark::Visiting);
        path.push(module.to_owned());
        for next in graph.get(module).into_iter().flatten() {
            if graph.contains_key(next)
                && let Some(cycle) = visit(next, graph, marks, path)
            {
                return Some(cycle);
            }
        }
        path.pop();
        marks.insert(module.to_owned(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    graph
        .keys()
        .find_map(|module| visit(module, graph, &mut marks, &mut Vec::new()))
}
