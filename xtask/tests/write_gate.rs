//! The write gate's lint: no API write call anywhere in the binaries' crates except through
//! `fleet_runtime::gate::Writer`.
//!
//! A raw `kube::Api` write takes its parameters (`PostParams`, `PatchParams`, `DeleteParams`)
//! where the gate's methods take the `Api` first: `api.create(&PostParams, &object)` against
//! `writer.create(&api, &object)`, `api.patch(name, &PatchParams, &patch)` against
//! `writer.patch(&api, name, &PatchParams, &patch)`. So a call of a write verb whose
//! parameters sit where the raw API has them is a write around the gate.
//!
//! kube-runtime's `finalizer()` helper is refused too: it writes the finalizer around the gate
//! (`fleet_runtime::finalizer::finalized` writes it through it).
//!
//! Exempt: the gate itself; the election crate (its Lease writes make the claims); the test
//! kit and xtask (tooling that sets clusters up, not product writes); and `tests/` directories.

mod support;

use support::{rust_files, workspace_root};

/// Where each write verb of `kube::Api` takes its parameters (0-based argument index).
const VERBS: [(&str, usize); 8] = [
    ("create", 0),
    ("replace", 1),
    ("replace_status", 1),
    ("patch", 1),
    ("patch_status", 1),
    ("patch_metadata", 1),
    ("delete", 1),
    ("delete_collection", 0),
];

const EXEMPT_CRATES: [&str; 2] = ["fleet-election", "fleet-testkit"];
const GATE: &str = "fleet-runtime/src/gate.rs";

#[test]
fn every_api_write_goes_through_the_gate() {
    let crates = workspace_root().join("crates");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&crates).expect("crates/") {
        let dir = entry.expect("entry").path();
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if !EXEMPT_CRATES.contains(&name) {
            rust_files(&dir.join("src"), &mut files);
        }
    }
    assert!(files.len() > 50, "found only {} source files", files.len());
    let mut offenders = Vec::new();
    for file in files {
        let shown = file
            .strip_prefix(&crates)
            .unwrap_or(&file)
            .display()
            .to_string();
        if shown == GATE {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("read");
        for (line, call) in raw_writes(&text) {
            offenders.push(format!("{shown}:{line}: {call}"));
        }
        // kube-runtime's finalizer helper writes the finalizer itself: use
        // `fleet_runtime::finalizer::finalized`, which writes through the gate.
        for (index, line) in text.lines().enumerate() {
            if line.contains("kube::runtime::finalizer") {
                offenders.push(format!("{shown}:{}: {}", index + 1, line.trim()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "API writes around fleet_runtime::gate::Writer (write through a Writer instead):\n{}",
        offenders.join("\n")
    );
}

#[test]
fn the_lint_tells_raw_writes_from_gated_ones() {
    let raw = [
        "api.create(&PostParams::default(), &cm).await",
        "api.patch(&name, &PatchParams::apply(M), &Patch::Apply(&b)).await",
        "api.patch_status(\n    name,\n    &params,\n    &patch,\n)",
        "api.delete(name, &DeleteParams::background()).await",
        "secrets.delete_collection(&DeleteParams::default(), &lp).await",
        "api.replace(&name, &PostParams::default(), &lease)",
    ];
    for code in raw {
        assert_eq!(raw_writes(code).len(), 1, "{code}");
    }
    let fine = [
        "writer.create(&api, &cm).await",
        "writer.patch(&api, &name, &PatchParams::apply(M), &patch).await",
        "writer.delete(&api, name, &DeleteParams::background()).await",
        "writer.delete_collection(&api, &DeleteParams::default(), &lp).await",
        "input.replace('/', \"-\")",
        "OpenOptions::new().create(true)",
        "shared.delete()",
    ];
    for code in fine {
        assert!(raw_writes(code).is_empty(), "{code}");
    }
}

/// The raw API write calls in `text`: (line, call).
fn raw_writes(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (verb, params_at) in VERBS {
        let needle = format!(".{verb}(");
        let mut from = 0;
        while let Some(at) = text[from..].find(&needle) {
            let start = from + at + needle.len();
            from = start;
            let Some(args) = arguments(&text[start..]) else {
                continue;
            };
            let is_params = |arg: &str| {
                let arg = arg.trim().trim_start_matches('&');
                arg.contains("Params") || arg == "params" || arg.ends_with("_params")
            };
            if args.get(params_at).is_some_and(|arg| is_params(arg)) {
                let line = text[..start].lines().count();
                found.push((line, format!(".{verb}({})", args.join(", "))));
            }
        }
    }
    found
}

/// The top-level, comma-separated arguments of a call whose `(` was just passed.
fn arguments(rest: &str) -> Option<Vec<String>> {
    let mut depth = 0usize;
    let mut current = String::new();
    let mut args = Vec::new();
    for c in rest.chars() {
        match c {
            '(' | '[' | '{' => {
                depth += 1;
                current.push(c);
            }
            ')' | ']' | '}' if depth == 0 => {
                if !current.trim().is_empty() {
                    args.push(current.trim().to_owned());
                }
                return Some(args);
            }
            ')' | ']' | '}' => {
                depth -= 1;
                current.push(c);
            }
            ',' if depth == 0 => args.push(std::mem::take(&mut current).trim().to_owned()),
            _ => current.push(c),
        }
    }
    None
}
