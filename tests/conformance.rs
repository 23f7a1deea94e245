//! Runs every case in tests/conformance/ through the native engine. The worker (in workerd)
//! and the browser build run the same files through the same `scenario::run`, so all hosts
//! are held to one set of expected decisions.

use edgerec::scenario::{run_json, Case};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn cases() -> Vec<PathBuf> {
    let dir = root().join("tests/conformance");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/conformance exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    v.sort();
    v
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn every_conformance_case_passes_natively() {
    let files = cases();
    assert!(files.len() >= 10, "corpus too small: {}", files.len());
    let mut failures = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let case: Case =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let report = run_json(&text, &read(&case.bundle), read(&case.catalog).as_bytes());
        let name = Path::new(f)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if !report.mismatches.is_empty() {
            failures.push(format!(
                "{name}:\n  {}\n  got: {}",
                report.mismatches.join("\n  "),
                serde_json::to_string(&report.steps).unwrap()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
